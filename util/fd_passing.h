// File descriptors across a unix socket (SCM_RIGHTS), with one byte of data: how a sandbox's
// template hands the zygote the pipes of the next call process (worker/zygote.h), and how a pool
// hands its fork server the channel, output pipe and page of the next worker (pool/fork_server.h).
#pragma once

#include <cstddef>
#include <span>

namespace vial::util {

/// The most descriptors one message carries.
constexpr std::size_t kMaxPassedFds = 4;

/// Sends `byte` with copies of `fds` (at most kMaxPassedFds). False when the socket refused (the
/// peer is gone).
bool sendFds(int socket, char byte, std::span<const int> fds);

/// Receives what sendFds sent: the byte, and exactly fds.size() descriptors (close-on-exec).
/// False at end of stream, or when the message carries another number of descriptors or was cut
/// short by the kernel (whatever did arrive is closed: nothing leaks).
bool receiveFds(int socket, char& byte, std::span<int> fds);

}  // namespace vial::util
