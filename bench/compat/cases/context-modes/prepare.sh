set -e
echo x > exec.sh && chmod 755 exec.sh
echo p > private && chmod 600 private
echo s > setuid && chmod 4755 setuid
mkdir -p emptydir && chmod 700 emptydir
mkdir -p sticky && chmod 1777 sticky
echo h > hard1 && ln hard1 hard2
