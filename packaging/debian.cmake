# Debian packages through CPack: `cpack -G DEB --config build/CPackConfig.cmake` (README,
# "Installing") writes, from the install components of packaging/CMakeLists.txt:
#   vial_<version>_amd64.deb          the `vial` program, libvial.so.0.1, vial-worker, systemd
#                                     user units, man pages
#   libvial-dev_<version>_amd64.deb   headers, libvial.so, the CMake package, vial.pc
#   python3-vial_<version>_amd64.deb  `import vial` for Debian's python3 (3.11)
# Depends: come from dpkg-shlibdeps (every ELF file's libraries), plus what it cannot see: the
# -dev and Python packages need this exact vial, the Python package this Python.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME vial)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
# No CPACK_PACKAGE_DESCRIPTION_SUMMARY: CPack would make it every package's synopsis, above the
# package's own. Each description below is the synopsis, then lines CPack indents by one space.
set(CPACK_PACKAGE_CONTACT "vial developers <vial@localhost>")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL vial dev python)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_SECTION misc)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)

set(CPACK_DEBIAN_VIAL_PACKAGE_NAME vial)
set(CPACK_DEBIAN_VIAL_PACKAGE_SECTION utils)
set(CPACK_DEBIAN_VIAL_DESCRIPTION
    "run Python snippets in a pool of worker processes, each embedding CPython
A parent keeps a pool of worker processes, each embedding CPython; callers
send source strings plus variables, and every _return(x) the code calls is
gathered into the call's result list. A per-call timeout kills a hung worker
and the pool heals. This package holds the `vial` program (vial run, vial
serve, vial stats, vial ping), the shared library libvial.so.0.1, the
vial-worker program they start, systemd user units and the manual pages.")
# The library's shlibs file (CPack has no per-component switch for it; only the vial package
# holds a library with a SONAME) and dpkg's ldconfig trigger, which CPack does not write.
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY "=")
set(CPACK_DEBIAN_VIAL_PACKAGE_CONTROL_EXTRA ${CMAKE_CURRENT_SOURCE_DIR}/debian/vial/triggers)
# Stripped, as Debian ships programs and libraries.
set(CPACK_STRIP_FILES ON)

set(CPACK_DEBIAN_DEV_PACKAGE_NAME libvial-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS "vial (= ${PROJECT_VERSION})")
set(CPACK_DEBIAN_DEV_DESCRIPTION "development files of vial (C++ library)
The headers of vial's C++ API (#include <vial/vial.h>), the link-time
libvial.so, the CMake package (find_package(vial CONFIG REQUIRED), target
vial::vial) and vial.pc for pkg-config.")

set(CPACK_DEBIAN_PYTHON_PACKAGE_NAME python3-vial)
set(CPACK_DEBIAN_PYTHON_PACKAGE_SECTION python)
set(CPACK_DEBIAN_PYTHON_PACKAGE_DEPENDS
    "vial (= ${PROJECT_VERSION}), python3 (>= 3.11), python3 (<< 3.12)")
# Byte-compiled at install and cleaned at removal as Debian's own Python packages are
# (py3compile, py3clean), so removing the package leaves no __pycache__ behind.
set(CPACK_DEBIAN_PYTHON_PACKAGE_CONTROL_EXTRA
    ${CMAKE_CURRENT_SOURCE_DIR}/debian/python3-vial/postinst
    ${CMAKE_CURRENT_SOURCE_DIR}/debian/python3-vial/prerm)
set(CPACK_DEBIAN_PYTHON_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_DEBIAN_PYTHON_DESCRIPTION "Python bindings of vial
import vial: vial.Pool and vial.connect with concurrent.futures and asyncio
futures, and vial.twisted.run_async, Evennia's run_async on Twisted rebuilt
on vial.")

include(CPack)
