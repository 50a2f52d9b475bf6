printf '\xef\xbb\xbf' | cat - Dockerfile > D && mv D Dockerfile
