set -e
mkdir t && echo x > t/x && tar --mtime=2001-02-03 -cJf a.tar.xz -C t x && rm -rf t
printf '\x1f\x8b\x08\x00garbage-not-gzip' > corrupt.tar.gz
