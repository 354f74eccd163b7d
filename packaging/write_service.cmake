# Writes vial.service at install time (included by packaging/CMakeLists.txt's install code):
# ExecStart names the installed `vial` as one quoted word, so that a prefix with spaces or '%'
# still names it; bare, the path would be split at a space and '%' read as a specifier.
# In: VIAL_SERVICE_TEMPLATE (vial.service.in), VIAL_BINDIR and VIAL_UNIT_DIR (under the prefix).
get_filename_component(prefix "${CMAKE_INSTALL_PREFIX}" ABSOLUTE)
set(program "${prefix}/${VIAL_BINDIR}/vial")
# systemd refuses an executable whose path holds a quote, a backslash or a control character,
# however it is written (systemd.service(5), "Command lines"; '$' is taken as it is there).
if(program MATCHES "[\"'\\\\\n\r\t]")
  message(WARNING "vial.service cannot start ${program}: systemd refuses a program whose path "
                  "holds a quote, a backslash or a control character. Install to another prefix "
                  "to use the unit.")
endif()
string(REPLACE "%" "%%" program "${program}")
set(VIAL_PROGRAM "\"${program}\"")
set(unit "$ENV{DESTDIR}${CMAKE_INSTALL_PREFIX}/${VIAL_UNIT_DIR}/vial.service")
message(STATUS "Writing: ${unit}")
configure_file("${VIAL_SERVICE_TEMPLATE}" "${unit}" @ONLY)
