// The namespaces a sandboxed worker lives in, made before Python or any thread exists (a process
// can enter a new user namespace only while it is single-threaded).
//
// The worker's first process unshares user, mount, network and IPC namespaces; its guard, still
// outside, writes the uid and gid maps; the worker becomes uid 0 of its namespace (which is
// `nobody` outside when the host runs as root, else the host's own uid: never root), makes its
// mounts private, and unshares a pid namespace whose pid 1 (the template) it forks next.
// Network: the new namespace has only a loopback device, down; the pool's channel, made before,
// keeps working. worker/guard.cpp runs the steps in order; worker/sandbox.h builds on them.
#pragma once

#include <sys/types.h>

#include <string>

namespace vial::worker {

/// In the worker, single-threaded: unshares user, mount, network and IPC namespaces. Returns
/// why it cannot ("" when it did), naming the kernel setting to change.
std::string unshareWorkerNamespaces();

/// In the guard: maps uid and gid 0 of its child `worker`'s new user namespace to the guard's own
/// ids, or to nobody (65534) for root. Returns why it cannot ("" when it did).
std::string mapWorkerIdentity(pid_t worker);

/// In the worker, once mapped: becomes uid/gid 0 of its namespace, makes every mount private
/// (nothing it mounts leaks out, nothing mounted outside reaches in) and unshares a pid
/// namespace for the children it forks next. Returns why it cannot ("" when it did).
std::string becomeNamespaceRoot();

}  // namespace vial::worker
