#!/bin/sh
cat /etc/hello
echo "hello from $(uname -m)"
