// server/message_gate: Cap'n Proto frames pass whole, split anywhere, many segments or one;
// a frame declaring more than the limit, or too many segments, fails the read that brings its
// header, before the body has even been sent. In-process, over kj's in-memory pipes.
#include "server/message_gate.h"

#include <capnp/message.h>
#include <capnp/serialize-async.h>
#include <capnp/serialize.h>
#include <kj/async-io.h>
#include <kj/async.h>

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "protocol/vial.capnp.h"

namespace {

using vial::server::MessageGate;

constexpr std::size_t kLimit = 64 << 10;

// A framed message: a list of `pieces` values of `pieceBytes` bytes of 0xff each (were the gate
// to lose track of where a frame ends, those bytes would read as a header declaring far too
// much). With segments of `segmentWords` words smaller than a piece, each piece takes a segment.
kj::Array<capnp::word> frameOf(unsigned pieces, unsigned pieceBytes, unsigned segmentWords = 1024) {
  capnp::MallocMessageBuilder builder(segmentWords, capnp::AllocationStrategy::FIXED_SIZE);
  for (auto value : builder.initRoot<vial::wire::Value>().initList(pieces))
    for (auto& b : value.initBytes(pieceBytes)) b = 0xff;
  return capnp::messageToFlatArray(builder);
}

// The total size of the values of a message made by frameOf().
std::size_t bytesIn(capnp::MessageReader& message) {
  std::size_t total = 0;
  for (auto value : message.getRoot<vial::wire::Value>().getList())
    total += value.getBytes().size();
  return total;
}

std::size_t segmentsOf(kj::ArrayPtr<const capnp::word> frame) {
  return static_cast<std::size_t>(reinterpret_cast<const std::uint32_t*>(frame.begin())[0]) + 1;
}

// The first word of a frame: `segments` segments, the first of `firstWords` words.
kj::Array<kj::byte> headerOf(std::uint32_t segments, std::uint32_t firstWords) {
  auto header = kj::heapArray<kj::byte>(8);
  std::uint32_t fields[2] = {segments - 1, firstWords};
  std::memcpy(header.begin(), fields, sizeof fields);
  return header;
}

class MessageGateTest : public ::testing::Test {
 protected:
  MessageGateTest() : waitScope_(loop_) {
    auto pipe = kj::newTwoWayPipe();
    gate_ = kj::heap<MessageGate>(kj::mv(pipe.ends[0]), kLimit);
    sender_ = kj::mv(pipe.ends[1]);
  }
  ~MessageGateTest() noexcept override {}

  // Sends `bytes` after what was sent before (in the background: an in-memory pipe's write
  // waits for the reader).
  void send(kj::ArrayPtr<const kj::byte> bytes) {
    sending_ =
        sending_.then([this, bytes]() { return sender_->write(bytes.begin(), bytes.size()); })
            .eagerlyEvaluate(nullptr);
  }
  void send(kj::ArrayPtr<const capnp::word> frame) { send(frame.asBytes()); }

  // Reads `total` bytes through the gate in reads of 1, 2, ... 13 bytes in turn.
  std::vector<kj::byte> readInOddPieces(std::size_t total) {
    std::vector<kj::byte> got(total);
    std::size_t done = 0;
    for (std::size_t piece = 1; done < total; piece = piece % 13 + 1) {
      std::size_t n = std::min(piece, total - done);
      done += gate_->tryRead(got.data() + done, 1, n).wait(waitScope_);
    }
    return got;
  }

  // Reads one message through the gate with Cap'n Proto's own reader. An exception if the gate
  // refuses; fails the test if nothing is decided with what has been sent.
  kj::Own<capnp::MessageReader> readMessage() {
    capnp::ReaderOptions options;
    options.traversalLimitInWords = std::uint64_t{1} << 30;
    auto reading = capnp::readMessage(*gate_, options);
    if (!reading.poll(waitScope_)) {
      ADD_FAILURE() << "the read neither completed nor failed with what was sent";
      return {};
    }
    return reading.wait(waitScope_);
  }

  kj::EventLoop loop_;
  kj::WaitScope waitScope_;
  kj::Own<MessageGate> gate_;
  kj::Own<kj::AsyncIoStream> sender_;
  kj::Promise<void> sending_ = kj::READY_NOW;
};

TEST_F(MessageGateTest, LetsMessagesWithinTheLimitThrough) {
  auto frame = frameOf(1, 1000);
  send(frame);
  auto message = readMessage();
  ASSERT_NE(message, nullptr);
  EXPECT_EQ(bytesIn(*message), 1000u);
}

TEST_F(MessageGateTest, FollowsFramesSplitAnywhereAndManySegments) {
  auto small = frameOf(1, 100);
  auto multi = frameOf(20, 1000, 64);  // segments of 64 words: one per piece
  auto empty = frameOf(0, 0);
  ASSERT_GT(segmentsOf(multi), 3u);
  ASSERT_LT(segmentsOf(multi), vial::kMaxMessageSegments);
  std::vector<kj::byte> all;
  for (auto* frame : {&small, &multi, &empty, &small})
    all.insert(all.end(), frame->asBytes().begin(), frame->asBytes().end());
  send(kj::arrayPtr(all.data(), all.size()));

  EXPECT_EQ(readInOddPieces(all.size()), all) << "the bytes passed through altered";

  // Still at a frame boundary: a whole message reads, and a header over the limit is refused.
  send(small);
  EXPECT_NE(readMessage(), nullptr);
  auto tooLarge = headerOf(1, kLimit / 8 + 1);
  send(tooLarge);
  EXPECT_THROW(readMessage(), kj::Exception);
}

TEST_F(MessageGateTest, RefusesADeclarationOverTheLimitBeforeTheBodyIsSent) {
  // 480 MiB declared; nothing after the first word.
  auto header = headerOf(1, (480u << 20) / 8);
  send(header);
  try {
    readMessage();
    ADD_FAILURE() << "a message of 480 MiB was let through";
  } catch (const kj::Exception& e) {
    EXPECT_NE(std::string(e.getDescription().cStr()).find("may send at most 65536 bytes"),
              std::string::npos)
        << e.getDescription().cStr();
  }
  // And it stays refused.
  char byte;
  EXPECT_THROW(gate_->tryRead(&byte, 1, 1).wait(waitScope_), kj::Exception);
}

TEST_F(MessageGateTest, ControlUnderAHigherLimitTheReaderWaitsForTheWholeBody) {
  // The same header, let through: capnp's reader takes it, allocates room for 480 MiB and
  // waits for them. This is what the limit prevents.
  gate_->setLimit(std::size_t{1} << 30);
  auto header = headerOf(1, (480u << 20) / 8);
  send(header);
  capnp::ReaderOptions options;
  options.traversalLimitInWords = std::uint64_t{1} << 30;
  auto reading = capnp::readMessage(*gate_, options);
  EXPECT_FALSE(reading.poll(waitScope_)) << "the reader did not wait for the body";
}

TEST_F(MessageGateTest, MeasuresAMessageByAllItsSegments) {
  // Segments of 48 KiB and 32 KiB: each within the limit, together over it. Only the header
  // (first word and the size table) is sent.
  auto header = headerOf(2, (48 << 10) / 8);
  std::uint32_t table[2] = {(32 << 10) / 8, 0};  // the second size, and padding
  send(header);
  send(kj::arrayPtr(reinterpret_cast<const kj::byte*>(table), sizeof table));
  EXPECT_THROW(readMessage(), kj::Exception);
}

TEST_F(MessageGateTest, RefusesTooManySegments) {
  auto header = headerOf(vial::kMaxMessageSegments + 1, 1);
  send(header);
  EXPECT_THROW(readMessage(), kj::Exception);
}

TEST_F(MessageGateTest, ARaisedLimitAppliesFromTheNextMessage) {
  auto small = frameOf(1, 100);
  auto large = frameOf(1, 100 << 10);
  send(small);
  ASSERT_NE(readMessage(), nullptr);
  gate_->setLimit(1 << 20);
  send(large);
  auto message = readMessage();
  ASSERT_NE(message, nullptr);
  EXPECT_EQ(bytesIn(*message), 100u << 10);
}

TEST_F(MessageGateTest, TheEndOfTheStreamPassesThrough) {
  sender_->shutdownWrite();
  char byte;
  EXPECT_EQ(gate_->tryRead(&byte, 1, 1).wait(waitScope_), 0u);
}

}  // namespace
