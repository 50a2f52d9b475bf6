mkdir -p src/in && echo in > src/in/f && tar -C src -cf t.tar in && tar -C src -czf t.tar.gz in && tar -C src -cjf t.tar.bz2 in && rm -rf src
