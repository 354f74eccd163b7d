/* A stand-in for sudo in containment_test: made set-user-ID root by the test, it turns all its
   user ids into root's (as sudo does), then sleeps. Only the test installs it that way. */
#define _GNU_SOURCE
#include <unistd.h>

int main(void) {
  if (setresuid(0, 0, 0) != 0) return 1;
  sleep(1000);
  return 0;
}
