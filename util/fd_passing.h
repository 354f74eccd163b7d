// File descriptors across a unix socket (SCM_RIGHTS), with one byte of data: how a sandbox's
// template hands the zygote the pipes of the next call process (worker/zygote.h).
#pragma once

namespace vial::util {

/// Sends `byte` with copies of both `fds`. False when the socket refused (the peer is gone).
bool sendFds(int socket, char byte, const int (&fds)[2]);

/// Receives what sendFds sent: the byte, and both descriptors (close-on-exec). False at end of
/// stream or when the message does not carry exactly two descriptors.
bool receiveFds(int socket, char& byte, int (&fds)[2]);

}  // namespace vial::util
