#!/bin/sh
# /usr/sbin/unhitch, as the Debian package installs it: the Node.js runtime the package
# carries (under /usr/lib/unhitch, never on PATH) runs unhitch, whatever `node` PATH has.
exec /usr/lib/unhitch/node/bin/node /usr/lib/unhitch/app/dist/src/bin.js "$@"
