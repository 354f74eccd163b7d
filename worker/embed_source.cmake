# cmake -DINPUT=file -DOUTPUT=file.cpp -DNAME=kName -P embed_source.cmake: writes a C++ source
# defining `const char vial::worker::NAME[]`, the bytes of INPUT and a terminating NUL. The bytes
# are written as character escapes, so nothing in INPUT needs escaping (worker/bootstrap.py is embedded so).
file(READ "${INPUT}" hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "'\\\\x\\1'," bytes "${hex}")
string(REPEAT "'\\\\x..'," 16 line)
string(REGEX REPLACE "(${line})" "\\1\n    " bytes "${bytes}")
get_filename_component(from "${INPUT}" NAME)
file(WRITE "${OUTPUT}.tmp"
  "// Generated from ${from} by worker/embed_source.cmake; do not edit.\n"
  "namespace vial::worker {\n"
  "extern const char ${NAME}[];\n"
  "const char ${NAME}[] = {\n    ${bytes}'\\0'};\n"
  "}  // namespace vial::worker\n")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
