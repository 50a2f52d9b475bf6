mkdir -p src && echo x > src/f && tar -C src -cf t.tar f && rm -rf src
