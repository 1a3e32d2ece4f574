#include "testing/local_registry.h"

#include <archive.h>
#include <archive_entry.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <fstream>
#include <thread>

#include <curl/curl.h>

#include "agent/image/fs_util.h"
#include "testing/missing.h"
#include "testing/ports.h"

namespace skiff::agent::image::testing {
namespace {

// exec with the child killed when this thread's process dies, so a crashed test leaves no
// registry behind.
pid_t spawn(const std::vector<std::string>& argv, int outFd) {
  std::vector<char*> args;
  for (const std::string& a : argv) {
    args.push_back(const_cast<char*>(a.c_str()));
  }
  args.push_back(nullptr);
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid != 0) {
    return pid;
  }
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) {
    ::_exit(127);
  }
  ::setpgid(0, 0);
  int devNull = ::open("/dev/null", O_RDONLY);
  ::dup2(devNull, 0);
  ::dup2(outFd, 1);
  ::dup2(outFd, 2);
  ::execvp(args[0], args.data());
  ::_exit(127);
}

size_t discard(char*, size_t size, size_t count, void*) {
  return size * count;
}

long probe(const std::string& url) {
  CURL* curl = curl_easy_init();
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 1000L);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
  long status = 0;
  if (curl_easy_perform(curl) == CURLE_OK) {
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  }
  curl_easy_cleanup(curl);
  return status;
}

Status run(const std::vector<std::string>& argv) {
  CommandResult r = runCommand(argv);
  if (r.exitCode != 0) {
    std::string command;
    for (const std::string& a : argv) {
      command.append(command.empty() ? "" : " ").append(a);
    }
    return fail(ErrorCode::kInternal,
                command + " exited with " + std::to_string(r.exitCode) + ": " + r.output);
  }
  return {};
}

}  // namespace

CommandResult runCommand(const std::vector<std::string>& argv) {
  CommandResult result;
  int pipeFds[2];
  if (::pipe2(pipeFds, O_CLOEXEC) != 0) {
    return result;
  }
  pid_t pid = spawn(argv, pipeFds[1]);
  ::close(pipeFds[1]);
  if (pid < 0) {
    ::close(pipeFds[0]);
    return result;
  }
  char buffer[4096];
  while (true) {
    ssize_t n = ::read(pipeFds[0], buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;
    }
    result.output.append(buffer, static_cast<size_t>(n));
  }
  ::close(pipeFds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.exitCode = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

std::string busyboxPath() {
  for (const char* candidate : {"/bin/busybox", "/usr/bin/busybox"}) {
    if (::access(candidate, X_OK) == 0) {
      return candidate;
    }
  }
  return "";
}

std::string missingPrerequisites() {
  if (std::string root =
          skiff::testing::missingRoot("overlay mounts, device nodes, trusted.* xattrs");
      !root.empty()) {
    return root;
  }
  for (const char* tool : {"docker-registry", "umoci", "skopeo"}) {
    if (!skiff::testing::onPath(tool)) {
      return std::string(tool) + " is not installed (scripts/setup.sh installs it)";
    }
  }
  if (busyboxPath().empty()) {
    return "busybox-static is not installed (scripts/setup.sh installs it)";
  }
  return "";
}

TempDir::TempDir(const std::string& prefix) {
  const char* base = std::getenv("TMPDIR");
  std::string pattern =
      std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/" + prefix + "-XXXXXX";
  if (::mkdtemp(pattern.data()) != nullptr) {
    char* resolved = ::realpath(pattern.c_str(), nullptr);
    path_ = resolved != nullptr ? resolved : pattern;
    std::free(resolved);
  }
}

TempDir::~TempDir() {
  if (!path_.empty()) {
    unmountAll(path_);
    (void)fs::removeTree(path_);
  }
}

void unmountAll(const std::string& dir) {
  for (const std::string& mountPoint : fs::mountsUnder(dir)) {
    if (::umount2(mountPoint.c_str(), 0) != 0) {
      ::umount2(mountPoint.c_str(), MNT_DETACH);
    }
  }
}

Result<std::unique_ptr<LocalRegistry>> LocalRegistry::start(const std::string& workDir,
                                                            const std::string& listenAddress) {
  std::string lastError = "no attempt";
  for (int attempt = 0; attempt < 3; ++attempt) {
    std::unique_ptr<LocalRegistry> registry(new LocalRegistry());
    registry->port_ = skiff::testing::unusedLoopbackPort();
    registry->address_ = listenAddress;
    registry->storageDir_ = workDir + "/registry-storage";
    registry->logPath_ = workDir + "/registry.log";
    SKIFF_TRY_STATUS(fs::makeDirs(registry->storageDir_), "registry storage");
    std::string configPath = workDir + "/registry.yml";
    {
      std::ofstream config(configPath);
      config << "version: 0.1\n"
             << "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
             << "storage:\n  filesystem:\n    rootdirectory: " << registry->storageDir_ << "\n"
             << "  delete:\n    enabled: true\n"
             << "http:\n  addr: " << listenAddress << ":" << registry->port_ << "\n";
    }
    int logFd = ::open(registry->logPath_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    registry->pid_ = spawn({"docker-registry", "serve", configPath}, logFd);
    ::close(logFd);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    while (std::chrono::steady_clock::now() < deadline) {
      if (probe("http://" + registry->host() + "/v2/") == 200) {
        return registry;
      }
      int status = 0;
      if (::waitpid(registry->pid_, &status, WNOHANG) == registry->pid_) {
        registry->pid_ = -1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    lastError = registry->log();
  }
  return fail(ErrorCode::kUnavailable, "docker-registry did not start: " + lastError);
}

LocalRegistry::~LocalRegistry() {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 100; ++i) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
}

std::string LocalRegistry::blobDataPath(const Digest& digest) const {
  std::string hex(digest.hex());
  return storageDir_ + "/docker/registry/v2/blobs/sha256/" + hex.substr(0, 2) + "/" + hex + "/data";
}

std::string LocalRegistry::log() const {
  auto text = fs::readFile(logPath_, 1 << 20);
  return text ? *text : "";
}

ImageBuilder::ImageBuilder(std::string workDir)
    : workDir_(std::move(workDir)), layout_(workDir_ + "/oci") {}

Status ImageBuilder::create(const std::string& tag, const std::string& architecture) {
  if (!fs::exists(layout_)) {
    SKIFF_TRY_STATUS(run({"umoci", "init", "--layout", layout_}), "umoci init");
  }
  SKIFF_TRY_STATUS(run({"umoci", "new", "--image", layout_ + ":" + tag}), "umoci new");
  return configure(tag, {"--os", "linux", "--architecture", architecture});
}

Status ImageBuilder::addLayer(const std::string& tag,
                              const std::function<Status(const std::string&)>& edit) {
  std::string bundle = workDir_ + "/bundle-" + std::to_string(++bundles_);
  SKIFF_TRY_STATUS(run({"umoci", "unpack", "--image", layout_ + ":" + tag, bundle}),
                   "umoci unpack");
  Status edited = edit(bundle + "/rootfs");
  Status repacked =
      edited ? run({"umoci", "repack", "--image", layout_ + ":" + tag, bundle}) : edited;
  (void)fs::removeTree(bundle);
  return repacked;
}

Status ImageBuilder::addRawLayer(const std::string& tag, const std::string& tarPath) {
  return run({"umoci", "raw", "add-layer", "--image", layout_ + ":" + tag, tarPath});
}

Status ImageBuilder::configure(const std::string& tag, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"umoci", "config", "--image", layout_ + ":" + tag};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv);
}

Status ImageBuilder::copy(const std::string& tag, const std::string& dest,
                          const std::vector<std::string>& extraArgs) {
  std::vector<std::string> argv = {"skopeo", "copy", "--quiet"};
  if (dest.starts_with("docker://")) {
    argv.push_back("--dest-tls-verify=false");
  }
  argv.insert(argv.end(), extraArgs.begin(), extraArgs.end());
  argv.push_back("oci:" + layout_ + ":" + tag);
  argv.push_back(dest);
  return run(argv);
}

Status writeTar(const std::string& path, const std::vector<TarEntry>& entries,
                Compression compression) {
  archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  if (compression == Compression::kGzip) {
    archive_write_add_filter_gzip(a);
  } else if (compression == Compression::kZstd) {
    archive_write_add_filter_zstd(a);
  }
  if (archive_write_open_filename(a, path.c_str()) != ARCHIVE_OK) {
    std::string e = archive_error_string(a) ? archive_error_string(a) : "open failed";
    archive_write_free(a);
    return fail(ErrorCode::kIo, "write tar " + path + ": " + e);
  }
  for (const TarEntry& e : entries) {
    archive_entry* entry = archive_entry_new();
    archive_entry_set_pathname(entry, e.path.c_str());
    archive_entry_set_mtime(entry, 1'700'000'000, 0);
    switch (e.type) {
      case TarEntry::Type::kFile:
        archive_entry_set_filetype(entry, AE_IFREG);
        archive_entry_set_size(entry, static_cast<la_int64_t>(e.content.size()));
        break;
      case TarEntry::Type::kDir:
        archive_entry_set_filetype(entry, AE_IFDIR);
        break;
      case TarEntry::Type::kSymlink:
        archive_entry_set_filetype(entry, AE_IFLNK);
        archive_entry_set_symlink(entry, e.content.c_str());
        break;
      case TarEntry::Type::kCharDevice:
        archive_entry_set_filetype(entry, AE_IFCHR);
        archive_entry_set_rdev(entry, 0);
        break;
    }
    archive_entry_set_perm(entry, e.mode);
    archive_write_header(a, entry);
    if (e.type == TarEntry::Type::kFile && !e.content.empty()) {
      archive_write_data(a, e.content.data(), e.content.size());
    }
    archive_entry_free(entry);
  }
  int rc = archive_write_close(a);
  archive_write_free(a);
  if (rc != ARCHIVE_OK) {
    return fail(ErrorCode::kIo, "write tar " + path + ": close failed");
  }
  return {};
}

Status copyFileInto(const std::string& source, const std::string& rootfs, const std::string& dest,
                    unsigned mode) {
  auto bytes = fs::readFile(source, 64 << 20);
  if (!bytes) {
    return std::unexpected(bytes.error());
  }
  SKIFF_TRY_STATUS(writeFileInto(rootfs, dest, *bytes), "copy " + source);
  if (::chmod((rootfs + "/" + dest).c_str(), mode) != 0) {
    return std::unexpected(errnoError("chmod " + dest, errno));
  }
  return {};
}

Status writeFileInto(const std::string& rootfs, const std::string& dest,
                     const std::string& content) {
  std::string full = rootfs + "/" + dest;
  SKIFF_TRY_STATUS(fs::makeDirs(full.substr(0, full.rfind('/'))), "write " + dest);
  std::ofstream out(full, std::ios::binary | std::ios::trunc);
  out << content;
  if (!out) {
    return fail(ErrorCode::kIo, "write " + full);
  }
  return {};
}

}  // namespace skiff::agent::image::testing
