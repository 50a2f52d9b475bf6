set -e
mkdir -p t/d && echo one > t/d/one && echo two > t/two && ln -s two t/link && chmod 700 t/d
tar --owner=33 --group=44 --mtime=2001-02-03 -cf plain.tar -C t .
tar --mtime=2001-02-03 -czf gz.tar.gz -C t d
tar --mtime=2001-02-03 -cjf bz.tar.bz2 -C t two
echo "not a tar" > notatar.tar
rm -rf t
