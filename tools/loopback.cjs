// Preloaded into the fauxqs emulator (`NODE_OPTIONS=--require tools/loopback.cjs`). fauxqs 1.9
// always listens on 0.0.0.0 (its FAUXQS_HOST only names the host in queue URLs); a local test
// emulator must not be reachable from the network, so a TCP server this process opens on all
// interfaces binds to 127.0.0.1 instead.
'use strict';
const net = require('node:net');
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const options = args[0];
  if (options && typeof options === 'object' && options.port !== undefined &&
      [undefined, '', '0.0.0.0', '::'].includes(options.host)) {
    args[0] = { ...options, host: '127.0.0.1' };
  }
  return listen.apply(this, args);
};
