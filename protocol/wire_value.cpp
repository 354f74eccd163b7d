#include "protocol/wire_value.h"

#include "protocol/limits.h"

namespace vial {

namespace {

void checkDepth(int depth, const std::string& where) {
  if (depth > kMaxValueDepth)
    throw ConversionError(where + ": value is nested deeper than " +
                          std::to_string(kMaxValueDepth) + " levels");
}

template <class Items>
void itemsToWire(const Items& items, capnp::List<wire::Value>::Builder out, int depth,
                 const std::string& where);

void toWire(const Value& value, wire::Value::Builder out, int depth, const std::string& where) {
  checkDepth(depth, where);
  struct Visitor {
    wire::Value::Builder out;
    int depth;
    const std::string& where;
    void operator()(const None&) { out.setNone(); }
    void operator()(bool b) { out.setBool(b); }
    void operator()(std::int64_t i) { out.setInt(i); }
    void operator()(const BigInt& b) { out.setBigInt(b.digits); }
    void operator()(double d) { out.setFloat(d); }
    void operator()(const std::string& s) { out.setText(capnp::Text::Reader(s.data(), s.size())); }
    void operator()(const Bytes& b) {
      out.setBytes(
          capnp::Data::Reader(reinterpret_cast<const kj::byte*>(b.data.data()), b.data.size()));
    }
    void operator()(const List& l) { itemsToWire(l, out.initList(l.size()), depth, where); }
    void operator()(const Tuple& t) { itemsToWire(t, out.initTuple(t.size()), depth, where); }
    void operator()(const Dict& d) {
      auto entries = out.initDict(d.size());
      for (size_t i = 0; i < d.size(); ++i) {
        entries[i].setKey(capnp::Text::Reader(d[i].first.data(), d[i].first.size()));
        toWire(d[i].second, entries[i].initValue(), depth + 1, where);
      }
    }
  };
  std::visit(Visitor{out, depth, where}, value.storage());
}

template <class Items>
void itemsToWire(const Items& items, capnp::List<wire::Value>::Builder out, int depth,
                 const std::string& where) {
  for (size_t i = 0; i < items.size(); ++i) toWire(items[i], out[i], depth + 1, where);
}

std::string toString(capnp::Text::Reader text) {
  return std::string(text.begin(), text.size());
}

Value fromWire(wire::Value::Reader in, int depth) {
  checkDepth(depth, "result");
  switch (in.which()) {
    case wire::Value::NONE:
      return Value();
    case wire::Value::BOOL:
      return Value(in.getBool());
    case wire::Value::INT:
      return Value(in.getInt());
    case wire::Value::BIG_INT:
      return BigInt{toString(in.getBigInt())};
    case wire::Value::FLOAT:
      return Value(in.getFloat());
    case wire::Value::TEXT:
      return Value(toString(in.getText()));
    case wire::Value::BYTES: {
      auto data = in.getBytes();
      return Bytes{std::string(reinterpret_cast<const char*>(data.begin()), data.size())};
    }
    case wire::Value::LIST: {
      List list;
      list.reserve(in.getList().size());
      for (auto item : in.getList()) list.push_back(fromWire(item, depth + 1));
      return list;
    }
    case wire::Value::TUPLE: {
      Tuple tuple;
      tuple.reserve(in.getTuple().size());
      for (auto item : in.getTuple()) tuple.push_back(fromWire(item, depth + 1));
      return tuple;
    }
    case wire::Value::DICT: {
      Dict dict;
      dict.reserve(in.getDict().size());
      for (auto entry : in.getDict())
        dict.emplace_back(toString(entry.getKey()), fromWire(entry.getValue(), depth + 1));
      return dict;
    }
  }
  throw ConversionError("result: unknown value kind " + std::to_string(in.which()) +
                        " (worker and pool built from different schemas?)");
}

Output outputFromWire(wire::CallResult::Reader in) {
  return Output{toString(in.getStdout().getText()), toString(in.getStderr().getText()),
                in.getStdout().getTruncated(), in.getStderr().getTruncated()};
}

}  // namespace

void to_wire(const Value& value, wire::Value::Builder out, const std::string& where) {
  toWire(value, out, 0, where);
}

Value from_wire(wire::Value::Reader in) {
  return fromWire(in, 0);
}

Outcome from_wire(wire::CallResult::Reader in) {
  switch (in.which()) {
    case wire::CallResult::OK: {
      Ok ok;
      auto values = in.getOk();
      ok.values.reserve(values.size());
      for (auto v : values) ok.values.push_back(fromWire(v, 0));
      ok.output = outputFromWire(in);
      return ok;
    }
    case wire::CallResult::PYTHON_ERROR: {
      auto e = in.getPythonError();
      return PythonError{toString(e.getType()), toString(e.getMessage()),
                         toString(e.getTraceback()), outputFromWire(in)};
    }
    case wire::CallResult::REJECTED:
      return Rejected{toString(in.getRejected())};
  }
  throw ConversionError("result: unknown outcome kind " + std::to_string(in.which()));
}

capnp::ReaderOptions reader_options() {
  capnp::ReaderOptions options;
  // Traversal counts every word read; allow reading a maximal message twice over.
  options.traversalLimitInWords = 2 * kMaxMessageBytes / sizeof(capnp::word);
  // Each value level costs up to three pointer hops (list, entry, value).
  options.nestingLimit = 3 * kMaxValueDepth + 16;
  return options;
}

}  // namespace vial
