#pragma once

// Test and benchmark support for the image subsystem (not part of skiff-agent):
//   - `runCommand`: runs a program (argv, no shell) and captures its output;
//   - `TempDir`: a scratch directory that is unmounted and removed on destruction;
//   - `LocalRegistry`: the Debian `docker-registry` on a free loopback port, storage in a
//     directory of the caller, killed on destruction (and, through PR_SET_PDEATHSIG, when the
//     test process dies);
//   - `ImageBuilder`: builds OCI images without network using umoci (layers from directory trees
//     or raw tar files) and pushes or exports them with skopeo;
//   - `writeTar`: writes tar archives (plain, gzip or zstd) from in-memory entries.

#include <sys/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/image/digest.h"
#include "agent/image/manifest.h"
#include "common/error.h"

namespace skiff::agent::image::testing {

struct CommandResult {
  int exitCode = -1;   // -1 if the program could not be started or was killed.
  std::string output;  // stdout and stderr together.
};

CommandResult runCommand(const std::vector<std::string>& argv);

// Why the registry-backed tests cannot run here ("" if they can): not root, or a missing tool
// (docker-registry, umoci, skopeo, a static busybox).
std::string missingPrerequisites();

// A static busybox binary to put into test images ("" if none).
std::string busyboxPath();

class TempDir {
 public:
  // Creates a fresh directory under $TMPDIR (or /tmp) named after `prefix`.
  explicit TempDir(const std::string& prefix = "skiff-image-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Unmounts every mount at or below `dir` (deepest first, lazily if busy).
void unmountAll(const std::string& dir);

class LocalRegistry {
 public:
  // Starts docker-registry with its config and storage under `workDir`, listening on
  // `listenAddress` (an IPv4 address of the calling thread's network namespace; multi-node tests
  // use a test fabric's address). Retries on another port if the chosen one is taken meanwhile.
  static Result<std::unique_ptr<LocalRegistry>> start(
      const std::string& workDir, const std::string& listenAddress = "127.0.0.1");
  ~LocalRegistry();

  // "ADDRESS:PORT" ("127.0.0.1:PORT" by default).
  std::string host() const { return address_ + ":" + std::to_string(port_); }
  int port() const { return port_; }
  const std::string& storageDir() const { return storageDir_; }
  // The file the registry serves blob `digest` from.
  std::string blobDataPath(const Digest& digest) const;
  // The registry's log (for failure messages).
  std::string log() const;

 private:
  LocalRegistry() = default;
  pid_t pid_ = -1;
  int port_ = 0;
  std::string address_ = "127.0.0.1";
  std::string storageDir_;
  std::string logPath_;
};

class ImageBuilder {
 public:
  // Keeps an OCI layout and scratch bundles under `workDir`.
  explicit ImageBuilder(std::string workDir);

  // A new image `tag` without layers, for `architecture` (linux).
  Status create(const std::string& tag, const std::string& architecture = "amd64");
  // Adds a layer: unpacks `tag`, lets `edit` change the root filesystem (added, changed and
  // deleted files become the layer, deletions as whiteouts), and repacks it.
  Status addLayer(const std::string& tag,
                  const std::function<Status(const std::string& rootfs)>& edit);
  // Adds an uncompressed tar file as a layer as is (it may contain whiteouts of any kind).
  Status addRawLayer(const std::string& tag, const std::string& tarPath);
  // Runs `umoci config` with `args` (e.g. {"--config.cmd", "sh"}).
  Status configure(const std::string& tag, const std::vector<std::string>& args);
  // `skopeo copy oci:LAYOUT:tag DEST` (DEST like "docker://127.0.0.1:5000/x:y",
  // "docker-archive:/tmp/x.tar:x:y", "oci-archive:/tmp/x.tar:y"); `extraArgs` go before the
  // source (e.g. {"--format", "v2s2"}). TLS verification is off for docker:// destinations.
  Status copy(const std::string& tag, const std::string& dest,
              const std::vector<std::string>& extraArgs = {});

  const std::string& layout() const { return layout_; }

 private:
  std::string workDir_;
  std::string layout_;
  int bundles_ = 0;
};

struct TarEntry {
  enum class Type { kFile, kDir, kSymlink, kCharDevice };
  std::string path;
  Type type = Type::kFile;
  std::string content;  // File content, or the symlink target.
  unsigned mode = 0644;
};

// Writes `entries` as a tar archive at `path`.
Status writeTar(const std::string& path, const std::vector<TarEntry>& entries,
                Compression compression = Compression::kNone);

// Adds the file `source` to a root filesystem at `rootfs/dest`, creating parents.
Status copyFileInto(const std::string& source, const std::string& rootfs, const std::string& dest,
                    unsigned mode = 0755);
Status writeFileInto(const std::string& rootfs, const std::string& dest,
                     const std::string& content);

}  // namespace skiff::agent::image::testing
