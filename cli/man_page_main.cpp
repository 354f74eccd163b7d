// vial-man-page DIR: writes vial(1) and a page per command (vial-run(1), ...) into DIR, made from
// the help texts `vial --help` prints. Run by the build (cli/CMakeLists.txt), not installed. The
// pages carry no date or other trace of the build, so two builds write the same bytes.
#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "cli/help.h"
#include "cli/man_page.h"
#include "vial/version.h"

int main(int argc, char** argv) {
  using namespace vial::cli;
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  struct Page {
    std::string_view name;
    const char* help;
  };
  const Page pages[] = {{"vial", kMainHelp},
                        {"vial-run", kRunHelp},
                        {"vial-serve", kServeHelp},
                        {"vial-stats", kStatsHelp},
                        {"vial-ping", kPingHelp}};
  for (const Page& page : pages) {
    std::vector<std::string_view> others;
    for (const Page& other : pages)
      if (other.name != page.name) others.push_back(other.name);
    std::string path = std::string(argv[1]) + "/" + std::string(page.name) + ".1";
    std::string roff;
    try {
      roff = manPage({page.name, page.help, VIAL_VERSION_STRING, others});
    } catch (const std::invalid_argument& e) {
      std::fprintf(stderr, "%s: %s: %s\n", argv[0], std::string(page.name).c_str(), e.what());
      return 1;
    }
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << roff;
    out.close();
    if (!out) {
      std::fprintf(stderr, "%s: cannot write %s\n", argv[0], path.c_str());
      return 1;
    }
  }
  return 0;
}
