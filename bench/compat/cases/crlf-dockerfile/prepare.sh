sed -i 's/$/\r/' Dockerfile
