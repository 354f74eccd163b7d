#include "vial/version.h"

namespace vial {

const char* version() {
  return VIAL_VERSION_STRING;
}

}  // namespace vial
