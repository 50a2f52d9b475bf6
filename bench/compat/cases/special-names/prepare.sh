set -e
echo a > "with space.txt"
echo b > "ünïcödé.txt"
long=$(printf 'l%.0s' $(seq 1 150))
mkdir -p "deep/$long" && echo c > "deep/$long/$long.txt"
: > empty-file
echo z > mode000 && chmod 000 mode000
