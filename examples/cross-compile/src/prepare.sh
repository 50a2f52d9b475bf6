#!/bin/sh
# stands in for a dependency download (go mod download, cargo fetch, npm ci)
echo "dependencies prepared on $(uname -m)"
