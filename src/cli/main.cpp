// The `skiff` program: wires the real process (streams, terminal, clock, libcurl) into the
// commands. Everything else lives in the skiff_cli library so tests can drive it.

#include <sys/ioctl.h>
#include <unistd.h>

#include <chrono>
#include <iostream>
#include <thread>

#include <curl/curl.h>

#include "cli/commands.h"
#include "common/clock.h"

int main(int argc, char** argv) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  int columns = 0;
  if (winsize size{}; ::ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0) columns = size.ws_col;
  skiff::cli::Context context{
      .out = std::cout,
      .err = std::cerr,
      .in = std::cin,
      .outIsTty = ::isatty(STDOUT_FILENO) == 1,
      .errIsTty = ::isatty(STDERR_FILENO) == 1,
      .terminalColumns = columns,
      .config = skiff::cli::ConfigSources::fromEnvironment(),
      .makeApi = [](const skiff::cli::ClientConfig& config) -> std::unique_ptr<skiff::client::Api> {
        return std::make_unique<skiff::client::ApiClient>(config.address, config.token);
      },
      .sleep = [](std::chrono::milliseconds delay) { std::this_thread::sleep_for(delay); },
      .nowMs = [] { return skiff::SystemClock::instance().nowMs(); },
      .newIdempotencyKey = skiff::cli::randomIdempotencyKey,
  };
  std::vector<std::string> args(argv + 1, argv + argc);
  int code = skiff::cli::runCommandLine(args, context);
  std::cout.flush();
  curl_global_cleanup();
  return code;
}
