#!/usr/bin/env bash
# Creates an S3 bucket in a LocalStack (or any S3 endpoint accepting unsigned path-style
# requests) with a plain HTTP PUT. Succeeds when the bucket already exists.
#
# Usage: localstack/create-bucket.sh ENDPOINT BUCKET   (e.g. http://127.0.0.1:4566 strata)
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 ENDPOINT BUCKET" >&2
  exit 2
fi
ENDPOINT="${1%/}"
BUCKET="$2"

if ! command -v curl >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "create-bucket.sh: apt-get install curl" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >&2
  else
    echo "create-bucket.sh: error: curl not found; install it" >&2
    exit 1
  fi
fi

out="$(mktemp)"
trap 'rm -f "$out"' EXIT
code="$(curl -s -o "$out" -w '%{http_code}' -X PUT "$ENDPOINT/$BUCKET" || true)"
case "$code" in
  200) ;;
  409)
    # BucketAlreadyOwnedByYou (ours already) is fine; BucketAlreadyExists (someone else's) is not.
    grep -q 'BucketAlreadyOwnedByYou' "$out" || {
      echo "create-bucket.sh: bucket $BUCKET: HTTP 409: $(cat "$out")" >&2
      exit 1
    }
    ;;
  *)
    echo "create-bucket.sh: creating bucket $BUCKET at $ENDPOINT failed: HTTP ${code:-none}: $(cat "$out")" >&2
    exit 1
    ;;
esac
