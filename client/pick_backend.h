// vial::client::pickBackend: which host takes a Client's next call. Policy alone (plain numbers
// in, an index out), apart from the Balancer that owns the connections. Stateless.
#pragma once

#include <cstddef>
#include <optional>
#include <random>
#include <vector>

namespace vial::client {

/// Past this many candidates the pick is by two random choices instead of a full scan.
constexpr std::size_t kFullScanLimit = 8;

/// Which of the candidate hosts, given the calls each has outstanding, takes the next call: the
/// one with the fewest (ties broken at random), or with more than kFullScanLimit candidates the
/// lesser of two picked at random (power of two choices: nearly as even, and no herd of clients
/// all choosing the same emptiest host). nullopt when there is no candidate.
std::optional<std::size_t> pickBackend(const std::vector<std::size_t>& outstanding,
                                       std::mt19937& random);

}  // namespace vial::client
