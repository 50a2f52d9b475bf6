#!/bin/sh
# stands in for a cross compiler: emits a program "built" for $1/$2$3
cat <<SCRIPT
#!/bin/sh
echo "app for $1/$2${3:+/$3}, cross-built on $(uname -m), now running on \$(uname -m)"
SCRIPT
