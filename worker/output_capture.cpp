#include "worker/output_capture.h"

#include <string>
#include <string_view>

#include "protocol/limits.h"
#include "vial/value.h"

namespace vial::worker {

namespace {

// One stream of a call's output: what Python code wrote through sys.stdout/sys.stderr, then
// what reached the file descriptor (`fd`), as UTF-8, at most kMaxCapturedOutputBytes.
void writeOutput(PyObject* capture, const FdCapture::Stream& fd, wire::Output::Builder out) {
  PyRef text(PyObject_CallMethod(capture, "getvalue", nullptr));
  PyRef truncated(PyObject_GetAttrString(capture, "truncated"));
  bool cut = (truncated && PyObject_IsTrue(truncated.get()) == 1) || fd.truncated;
  PyErr_Clear();
  PyRef bytes;
  std::string_view all;
  if (text) {
    bytes = PyRef(PyUnicode_AsEncodedString(text.get(), "utf-8", "backslashreplace"));
    if (bytes)
      all = {PyBytes_AS_STRING(bytes.get()), static_cast<size_t>(PyBytes_GET_SIZE(bytes.get()))};
    PyErr_Clear();
  }
  std::string joined;  // only when something reached the fd too (rarely)
  if (!fd.bytes.empty()) {
    joined = std::string(all) + utf8_with_escapes(fd.bytes);
    all = joined;
  }
  size_t size = all.size();
  if (size > kMaxCapturedOutputBytes) {
    size = kMaxCapturedOutputBytes;
    while (size > 0 && (static_cast<unsigned char>(all[size]) & 0xC0) == 0x80) --size;
    cut = true;
  }
  out.setText(capnp::Text::Reader(all.data(), size));
  out.setTruncated(cut);
}

}  // namespace

OutputCapture::OutputCapture(PyRef captureType) : captureType_(std::move(captureType)) {}

OutputCapture::Call::Call(OutputCapture& capture) : capture_(capture) {
  PyRef limit(PyLong_FromSize_t(kMaxCapturedOutputBytes));
  stdout_ = PyRef(PyObject_CallOneArg(capture_.captureType_.get(), limit.get()));
  stderr_ = PyRef(PyObject_CallOneArg(capture_.captureType_.get(), limit.get()));
  savedStdout_ = PyRef::borrow(PySys_GetObject("stdout"));
  savedStderr_ = PyRef::borrow(PySys_GetObject("stderr"));
  PySys_SetObject("stdout", stdout_.get());
  PySys_SetObject("stderr", stderr_.get());
}

void OutputCapture::Call::restoreStreams() {
  if (!streamsSwapped_) return;
  streamsSwapped_ = false;
  PySys_SetObject("stdout", savedStdout_.get());
  PySys_SetObject("stderr", savedStderr_.get());
}

void OutputCapture::Call::finish(wire::Outcome::Builder out) {
  restoreStreams();
  writeOutput(stdout_.get(), fdOutput_.out, out.initStdout());
  writeOutput(stderr_.get(), fdOutput_.err, out.initStderr());
}

}  // namespace vial::worker
