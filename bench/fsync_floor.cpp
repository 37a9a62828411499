// fairdraw_fsync_floor: how long one durable commit takes on this machine's disk, the floor
// under every "durable before its 200" latency (the disk's ceiling, as nginx is the HTTP one).
//
//   fairdraw_fsync_floor --dir /tmp --commits 2000 --bytes 16384
//
// Does what SQLite's WAL does in each group commit with synchronous=FULL: writes the commit's
// frames after the previous ones, then fdatasync()s the file; like the WAL it starts again at
// the beginning of the file once it holds 64 MiB (journal_size_limit), so most commits
// overwrite blocks the file already has. Prints percentiles of write + fdatasync per commit.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

struct Options {
  std::string dir = "/tmp";
  long commits = 2000;
  long bytes = 16384;
  bool json = false;
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "fairdraw_fsync_floor: %s\n"
               "  --dir D        directory for the scratch file (default /tmp; use the database's)\n"
               "  --commits N    commits to time (default 2000)\n"
               "  --bytes B      bytes written per commit (default 16384: four 4 KiB WAL frames)\n"
               "  --json         machine-readable summary on stdout\n",
               why);
  std::exit(2);
}

long positive(const char* text, const char* name) {
  char* end = nullptr;
  const long v = std::strtol(text, &end, 10);
  if (end == text || *end != '\0' || v <= 0) usage((std::string(name) + " takes a positive integer").c_str());
  return v;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) usage((arg + " needs a value").c_str());
      return argv[++i];
    };
    if (arg == "--dir") o.dir = next();
    else if (arg == "--commits") o.commits = positive(next(), "--commits");
    else if (arg == "--bytes") o.bytes = positive(next(), "--bytes");
    else if (arg == "--json") o.json = true;
    else usage(("unknown option " + arg).c_str());
  }
  return o;
}

double at(const std::vector<double>& sorted, double q) {
  const auto i = static_cast<std::size_t>(q * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(i, sorted.size() - 1)];
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  std::string path = o.dir + "/fairdraw-fsync-floor-XXXXXX";
  const int fd = ::mkstemp(path.data());
  if (fd < 0) {
    std::perror(("fairdraw_fsync_floor: " + path).c_str());
    return 1;
  }
  ::unlink(path.c_str());  // gone when we exit, whatever happens
  constexpr long kWrapBytes = 64L << 20;
  std::vector<char> frame(static_cast<std::size_t>(o.bytes), 'f');
  std::vector<double> ms;
  ms.reserve(static_cast<std::size_t>(o.commits));
  long offset = 0;
  for (long i = 0; i < o.commits; ++i) {
    if (offset + o.bytes > kWrapBytes) offset = 0;
    const auto begun = std::chrono::steady_clock::now();
    if (::pwrite(fd, frame.data(), frame.size(), offset) != static_cast<ssize_t>(frame.size()) ||
        ::fdatasync(fd) != 0) {
      std::perror("fairdraw_fsync_floor: write/fdatasync");
      return 1;
    }
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - begun).count());
    offset += o.bytes;
  }
  ::close(fd);
  std::sort(ms.begin(), ms.end());
  double sum = 0;
  for (double v : ms) sum += v;
  if (o.json) {
    std::printf("{\"commits\": %ld, \"bytes\": %ld, \"mean_ms\": %.3f, \"p50_ms\": %.3f, \"p90_ms\": %.3f, "
                "\"p99_ms\": %.3f, \"p99_9_ms\": %.3f, \"max_ms\": %.3f}\n",
                o.commits, o.bytes, sum / static_cast<double>(ms.size()), at(ms, 0.5), at(ms, 0.9),
                at(ms, 0.99), at(ms, 0.999), ms.back());
  } else {
    std::printf("%ld commits of %ld bytes (write + fdatasync) in %s: mean %.3f ms, p50 %.3f, p90 %.3f, "
                "p99 %.3f, p99.9 %.3f, max %.3f ms\n",
                o.commits, o.bytes, o.dir.c_str(), sum / static_cast<double>(ms.size()), at(ms, 0.5),
                at(ms, 0.9), at(ms, 0.99), at(ms, 0.999), ms.back());
  }
  return 0;
}
