set -e
mkdir -p t/d && echo one > t/d/one && echo two > t/two
tar --owner=0 --group=0 --mtime=2001-02-03 -cf plain.tar -C t .
rm -rf t
