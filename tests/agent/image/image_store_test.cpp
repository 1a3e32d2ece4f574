// ImageStore against a real docker-registry on loopback, with test images built offline by umoci
// (from busybox-static) and pushed with skopeo. Skipped, with the reason, when not root or when a
// tool is missing. Every test unmounts and removes what it made, also when it fails.

#include "agent/image/image_store.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include <atomic>
#include <barrier>
#include <random>
#include <thread>

#include <curl/curl.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "agent/image/fs_util.h"
#include "agent/image/registry_client.h"
#include "testing/fake_http_server.h"
#include "testing/local_registry.h"
#include "testing/requirements.h"

namespace skiff::agent::image {
namespace {

using testing::ImageBuilder;
using testing::LocalRegistry;
using testing::TarEntry;
using testing::TempDir;

std::string randomBytes(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::string out(n, '\0');
  for (char& c : out) {
    c = static_cast<char>(gen() & 0xff);
  }
  return out;
}

size_t collect(char* data, size_t size, size_t count, void* user) {
  static_cast<std::string*>(user)->append(data, size * count);
  return size * count;
}

// PUTs a manifest (the registry API; skopeo cannot assemble an index from separate images).
long putManifest(const std::string& url, const std::string& body, const std::string& type) {
  CURL* curl = curl_easy_init();
  curl_slist* headers = curl_slist_append(nullptr, ("Content-Type: " + type).c_str());
  std::string response;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, "PUT");
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.c_str());
  curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &response);
  long status = 0;
  if (curl_easy_perform(curl) == CURLE_OK) {
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  }
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  return status;
}

// Counts what reaches the registry; an optional delay in `fetchManifest` makes concurrent
// callers overlap.
class CountingRegistry final : public Registry {
 public:
  explicit CountingRegistry(std::shared_ptr<Registry> inner,
                            std::chrono::milliseconds delay = std::chrono::milliseconds(0))
      : inner_(std::move(inner)), delay_(delay) {}
  Result<FetchedManifest> fetchManifest(const ImageReference& ref) override {
    ++manifests;
    std::this_thread::sleep_for(delay_);
    return inner_->fetchManifest(ref);
  }
  Status fetchBlob(const ImageReference& repo, const BlobRequest& blob) override {
    {
      std::lock_guard lock(mutex);
      ++blobs[blob.digest.str()];
    }
    return inner_->fetchBlob(repo, blob);
  }
  std::atomic<int> manifests{0};
  std::mutex mutex;
  std::map<std::string, int> blobs;  // Guarded by mutex.

 private:
  std::shared_ptr<Registry> inner_;
  std::chrono::milliseconds delay_;
};

struct Suite {
  std::unique_ptr<TempDir> dir;
  std::unique_ptr<LocalRegistry> registry;
  std::unique_ptr<ImageBuilder> builder;
  std::string host;
  std::string skip;   // What the host lacks.
  std::string error;  // Why the registry or the images could not be made: a failure.
};
Suite* suite = nullptr;

Status buildImages(Suite& s) {
  ImageBuilder& b = *s.builder;
  std::string busybox = testing::busyboxPath();
  // test/busybox:v1 — three layers: files; a deletion (whiteout) and an addition; an opaque dir.
  SKIFF_TRY_STATUS(b.create("v1"), "v1");
  SKIFF_TRY_STATUS(
      b.addLayer("v1",
                 [&](const std::string& root) -> Status {
                   SKIFF_TRY_STATUS(testing::copyFileInto(busybox, root, "bin/busybox"), "busybox");
                   SKIFF_TRY_STATUS(testing::writeFileInto(root, "etc/hello", "one\n"), "hello");
                   SKIFF_TRY_STATUS(testing::writeFileInto(root, "data/a", "a"), "a");
                   SKIFF_TRY_STATUS(testing::writeFileInto(root, "data/b", "b"), "b");
                   return testing::writeFileInto(root, "opq/old", "old");
                 }),
      "layer 1");
  SKIFF_TRY_STATUS(b.addLayer("v1",
                              [&](const std::string& root) -> Status {
                                if (::unlink((root + "/data/a").c_str()) != 0) {
                                  return std::unexpected(errnoError("unlink data/a", errno));
                                }
                                return testing::writeFileInto(root, "etc/two", "two\n");
                              }),
                   "layer 2");
  std::string raw = s.dir->path() + "/opaque.tar";
  SKIFF_TRY_STATUS(testing::writeTar(raw, {{"opq/", TarEntry::Type::kDir, "", 0755},
                                           {"opq/.wh..wh..opq", TarEntry::Type::kFile, "", 0644},
                                           {"opq/new", TarEntry::Type::kFile, "new", 0644}}),
                   "opaque layer");
  SKIFF_TRY_STATUS(b.addRawLayer("v1", raw), "layer 3");
  SKIFF_TRY_STATUS(b.configure("v1", {"--config.entrypoint", "/bin/busybox", "--config.cmd", "sh",
                                      "--config.env", "GREETING=hi", "--config.workingdir", "/data",
                                      "--config.user", "1000:1000"}),
                   "config");
  std::string reg = "docker://" + s.host;
  SKIFF_TRY_STATUS(b.copy("v1", reg + "/test/busybox:v1"), "push v1");
  SKIFF_TRY_STATUS(b.copy("v1", reg + "/test/busybox:v1-copy"), "push v1-copy");
  SKIFF_TRY_STATUS(b.copy("v1", reg + "/test/busybox-docker:v1", {"--format", "v2s2"}),
                   "push docker");

  // test/multi:{amd64,arm64} and an index over both at test/multi:latest.
  for (std::string arch : {"amd64", "arm64"}) {
    SKIFF_TRY_STATUS(b.create(arch, arch), arch);
    SKIFF_TRY_STATUS(b.addLayer(arch,
                                [&](const std::string& root) {
                                  return testing::writeFileInto(root, "arch", arch);
                                }),
                     arch);
    SKIFF_TRY_STATUS(b.copy(arch, reg + "/test/multi:" + arch), arch);
  }
  RegistryClient client;
  nlohmann::json index = {{"schemaVersion", 2},
                          {"mediaType", media_type::kOciIndex},
                          {"manifests", nlohmann::json::array()}};
  for (std::string arch : {"arm64", "amd64"}) {  // arm64 first: selection is not positional.
    auto m = client.fetchManifest(*ImageReference::parse(s.host + "/test/multi:" + arch));
    if (!m) {
      return std::unexpected(m.error());
    }
    index["manifests"].push_back({{"mediaType", m->mediaType},
                                  {"digest", m->digest.str()},
                                  {"size", m->bytes.size()},
                                  {"platform", {{"os", "linux"}, {"architecture", arch}}}});
  }
  long status = putManifest("http://" + s.host + "/v2/test/multi/manifests/latest", index.dump(),
                            std::string(media_type::kOciIndex));
  if (status != 201) {
    return fail(ErrorCode::kInternal, "PUT index: HTTP " + std::to_string(status));
  }
  // test/gc-{a,b,c}: one distinct layer each.
  for (int i = 0; i < 3; ++i) {
    std::string tag = std::string("gc-") + static_cast<char>('a' + i);
    SKIFF_TRY_STATUS(b.create(tag), tag);
    SKIFF_TRY_STATUS(b.addLayer(tag,
                                [&](const std::string& root) {
                                  return testing::writeFileInto(root, "payload",
                                                                randomBytes(300000, 100 + i));
                                }),
                     tag);
    SKIFF_TRY_STATUS(b.copy(tag, reg + "/test/" + tag + ":v1"), tag);
  }
  return {};
}

class ImageStoreTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    suite = new Suite();
    suite->skip = testing::missingPrerequisites();
    if (!suite->skip.empty()) {
      return;
    }
    suite->dir = std::make_unique<TempDir>("skiff-image-suite");
    auto registry = LocalRegistry::start(suite->dir->path());
    if (!registry) {
      suite->error = "docker-registry: " + registry.error().message();
      return;
    }
    suite->registry = std::move(*registry);
    suite->host = suite->registry->host();
    suite->builder = std::make_unique<ImageBuilder>(suite->dir->path() + "/build");
    (void)fs::makeDirs(suite->dir->path() + "/build");
    if (Status s = buildImages(*suite); !s) {
      suite->error = "building test images failed: " + s.error().message();
    }
  }
  static void TearDownTestSuite() {
    delete suite;  // Stops the registry, then removes its directory.
    suite = nullptr;
  }

  void SetUp() override {
    SKIFF_REQUIRE_NOTHING_MISSING(suite->skip);
    // With every tool there, a registry or image that cannot be made is a failure.
    ASSERT_TRUE(suite->error.empty()) << suite->error;
  }
  void TearDown() override {
    stores_.clear();
    testing::unmountAll(dir_.path());
  }

  std::string ref(const std::string& rest) const { return suite->host + "/test/" + rest; }

  ImageStore& open(std::shared_ptr<Registry> registry = nullptr, ImageStoreOptions options = {},
                   const std::string& name = "store") {
    if (!registry) {
      registry = std::make_shared<RegistryClient>();
    }
    options.root = dir_.path() + "/" + name;
    auto store = ImageStore::open(options, std::move(registry));
    EXPECT_TRUE(store) << store.error().message();
    stores_.push_back(std::move(*store));
    return *stores_.back();
  }

  std::string container(const std::string& name) const { return dir_.path() + "/c/" + name; }

  // Declared first so that it is destroyed last, after the stores.
  TempDir dir_;
  std::vector<std::unique_ptr<ImageStore>> stores_;
};

TEST_F(ImageStoreTest, PullByTagThenByDigest) {
  ImageStore& store = open();
  auto pulled = store.pull(ref("busybox:v1"));
  ASSERT_TRUE(pulled) << pulled.error().message();
  const Image& image = pulled->image;
  EXPECT_TRUE(pulled->downloaded);
  EXPECT_EQ(image.manifestMediaType, media_type::kOciManifest);
  EXPECT_EQ(image.layers.size(), 3u);
  EXPECT_EQ(image.names, std::vector<std::string>{ref("busybox:v1")});
  EXPECT_EQ(pulled->pinnedReference, ref("busybox@") + image.digest.str());
  EXPECT_EQ(image.config.entrypoint, std::vector<std::string>{"/bin/busybox"});
  EXPECT_EQ(image.config.cmd, std::vector<std::string>{"sh"});
  EXPECT_NE(std::find(image.config.env.begin(), image.config.env.end(), "GREETING=hi"),
            image.config.env.end());
  EXPECT_EQ(image.config.workingDir, "/data");
  EXPECT_EQ(image.config.user, "1000:1000");
  EXPECT_GT(image.diskBytes, 1'000'000);  // busybox is about 2 MB.

  // By digest in the same store: nothing to download, no registry needed.
  auto again = store.pull(pulled->pinnedReference);
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_FALSE(again->downloaded);
  EXPECT_EQ(again->image.digest, image.digest);

  // By digest into another store: the same image.
  ImageStore& other = open(nullptr, {}, "other");
  auto byDigest = other.pull(pulled->pinnedReference);
  ASSERT_TRUE(byDigest) << byDigest.error().message();
  EXPECT_EQ(byDigest->image.digest, image.digest);
  EXPECT_TRUE(byDigest->image.names.empty());
  EXPECT_TRUE(other.find(pulled->pinnedReference));
  EXPECT_TRUE(store.find(ref("busybox:v1")));
  EXPECT_TRUE(store.find(image.digest.str()));
  EXPECT_FALSE(store.find(ref("busybox:nope")));
}

TEST_F(ImageStoreTest, DockerSchema2Manifest) {
  ImageStore& store = open();
  auto pulled = store.pull(ref("busybox-docker:v1"));
  ASSERT_TRUE(pulled) << pulled.error().message();
  EXPECT_EQ(pulled->image.manifestMediaType, media_type::kDockerManifest);
  EXPECT_EQ(pulled->image.layers.size(), 3u);
  EXPECT_EQ(pulled->image.config.cmd, std::vector<std::string>{"sh"});
}

TEST_F(ImageStoreTest, ManifestListPicksLinuxAmd64) {
  ImageStore& store = open();
  auto pulled = store.pull(ref("multi:latest"));
  ASSERT_TRUE(pulled) << pulled.error().message();
  ASSERT_EQ(pulled->image.indexDigests.size(), 1u);
  // The pinned reference is the index's digest: it selects the same platform again later.
  EXPECT_EQ(pulled->pinnedReference, ref("multi@") + pulled->image.indexDigests[0].str());
  ASSERT_EQ(pulled->image.layerDirs.size(), 1u);
  EXPECT_EQ(*fs::readFile(pulled->image.layerDirs[0] + "/arch"), "amd64");
  EXPECT_EQ(pulled->image.config.architecture, "amd64");
  // Pulling the pinned index reference resolves locally to the same image.
  auto again = store.pull(pulled->pinnedReference);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->image.digest, pulled->image.digest);
  // A node of another platform gets the other manifest.
  ImageStoreOptions arm;
  arm.platform.architecture = "arm64";
  ImageStore& armStore = open(nullptr, arm, "arm");
  auto armPulled = armStore.pull(ref("multi:latest"));
  ASSERT_TRUE(armPulled) << armPulled.error().message();
  EXPECT_EQ(*fs::readFile(armPulled->image.layerDirs[0] + "/arch"), "arm64");
}

TEST_F(ImageStoreTest, BlobWithWrongDigestIsRefusedAsAnImageError) {
  // An image of its own, so corrupting its layer affects no other test.
  ImageBuilder& b = *suite->builder;
  ASSERT_TRUE(b.create("corrupt"));
  ASSERT_TRUE(b.addLayer("corrupt", [](const std::string& root) {
    return testing::writeFileInto(root, "payload", randomBytes(100000, 7));
  }));
  ASSERT_TRUE(b.copy("corrupt", "docker://" + ref("corrupt:v1")));
  RegistryClient client;
  auto manifest = client.fetchManifest(*ImageReference::parse(ref("corrupt:v1")));
  ASSERT_TRUE(manifest);
  auto parsed = parseManifest(manifest->bytes, manifest->mediaType);
  ASSERT_TRUE(parsed);
  Digest layer = parsed->layers[0].digest;
  // Flip one byte of the stored blob: same size, other content.
  std::string data = suite->registry->blobDataPath(layer);
  auto bytes = fs::readFile(data);
  ASSERT_TRUE(bytes) << bytes.error().message();
  (*bytes)[bytes->size() / 2] ^= 0x55;
  ASSERT_TRUE(testing::writeFileInto(data.substr(0, data.rfind('/')), "data", *bytes));

  ImageStore& store = open();
  auto pulled = store.pull(ref("corrupt:v1"));
  ASSERT_FALSE(pulled);
  EXPECT_TRUE(isDigestMismatch(pulled.error())) << pulled.error().message();
  EXPECT_NE(pulled.error().message().find(layer.str()), std::string::npos);
  EXPECT_TRUE(pulled.error().message().starts_with("pull " + ref("corrupt:v1")));
  EXPECT_TRUE(store.images().empty());
  EXPECT_FALSE(fs::exists(store.root() + "/layers/" + std::string(layer.hex())));
  EXPECT_TRUE(fs::listDir(store.root() + "/tmp").empty());
}

TEST_F(ImageStoreTest, OverlayRootfsShowsAllLayersWithWhiteoutsAndWritesLandInUpper) {
  ImageStore& store = open();
  auto pulled = store.pull(ref("busybox:v1"));
  ASSERT_TRUE(pulled) << pulled.error().message();
  // The layers on disk carry overlayfs's whiteout forms.
  struct stat st {};
  ASSERT_EQ(::lstat((pulled->image.layerDirs[1] + "/data/a").c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(st.st_rdev, makedev(0, 0));
  char value[4] = {0};
  EXPECT_EQ(::lgetxattr((pulled->image.layerDirs[2] + "/opq").c_str(), "trusted.overlay.opaque",
                        value, sizeof value),
            1);

  std::string dir = container("one");
  auto mount = store.prepareRootfs(pulled->image.digest, dir);
  ASSERT_TRUE(mount) << mount.error().message();
  EXPECT_EQ(mount->rootfs, dir + "/rootfs");
  EXPECT_EQ(mount->lowerDirs.size(), 3u);
  EXPECT_EQ(mount->lowerDirs.front(), pulled->image.layerDirs.back());  // Topmost first.
  EXPECT_TRUE(fs::isMountPoint(mount->rootfs));
  const std::string& root = mount->rootfs;
  EXPECT_TRUE(fs::exists(root + "/bin/busybox"));          // Layer 1.
  EXPECT_EQ(*fs::readFile(root + "/etc/hello"), "one\n");  // Layer 1.
  EXPECT_EQ(*fs::readFile(root + "/etc/two"), "two\n");    // Layer 2.
  EXPECT_FALSE(fs::exists(root + "/data/a"));              // Whited out in layer 2.
  EXPECT_TRUE(fs::exists(root + "/data/b"));
  EXPECT_FALSE(fs::exists(root + "/opq/old"));         // Hidden by the opaque dir.
  EXPECT_EQ(*fs::readFile(root + "/opq/new"), "new");  // Layer 3.
  // The image's busybox runs from it.
  auto run = testing::runCommand({"chroot", root, "/bin/busybox", "cat", "/etc/two"});
  EXPECT_EQ(run.exitCode, 0) << run.output;
  EXPECT_EQ(run.output, "two\n");

  // Writes land in the container's upper directory, never in a shared layer.
  ASSERT_TRUE(testing::writeFileInto(root, "etc/hello", "changed\n"));
  ASSERT_TRUE(testing::writeFileInto(root, "new-file", "mine"));
  EXPECT_EQ(*fs::readFile(mount->upperDir + "/etc/hello"), "changed\n");
  EXPECT_EQ(*fs::readFile(mount->upperDir + "/new-file"), "mine");
  EXPECT_EQ(*fs::readFile(pulled->image.layerDirs[0] + "/etc/hello"), "one\n");
  // A second container of the same image shares the layers and sees none of that.
  auto second = store.prepareRootfs(pulled->image.digest, container("two"));
  ASSERT_TRUE(second) << second.error().message();
  EXPECT_EQ(*fs::readFile(second->rootfs + "/etc/hello"), "one\n");
  EXPECT_FALSE(fs::exists(second->rootfs + "/new-file"));
  // Preparing again is idempotent; another image in the same directory is refused.
  EXPECT_TRUE(store.prepareRootfs(pulled->image.digest, dir));

  ASSERT_TRUE(store.releaseRootfs(dir));
  ASSERT_TRUE(store.releaseRootfs(container("two")));
  EXPECT_FALSE(fs::isMountPoint(dir + "/rootfs"));
  EXPECT_TRUE(fs::exists(dir + "/upper/new-file"));
  EXPECT_TRUE(store.releaseRootfs(dir));  // Releasing twice is fine.
  EXPECT_FALSE(store.prepareRootfs(pulled->image.digest, "relative/dir"));
  EXPECT_FALSE(store.prepareRootfs(pulled->image.digest, dir + ",upperdir=/etc"));
}

TEST_F(ImageStoreTest, ConcurrentPullsOfOneImageHappenOnce) {
  auto counting = std::make_shared<CountingRegistry>(std::make_shared<RegistryClient>(),
                                                     std::chrono::milliseconds(500));
  ImageStore& store = open(counting);
  constexpr int kThreads = 8;
  std::barrier start(kThreads);
  std::vector<Result<PulledImage>> results(kThreads, fail(ErrorCode::kInternal, "not run"));
  {
    std::vector<std::jthread> threads;
    for (int i = 0; i < kThreads; ++i) {
      threads.emplace_back([&, i] {
        start.arrive_and_wait();
        results[i] = store.pull(ref("busybox:v1"));
      });
    }
  }
  for (const auto& r : results) {
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_EQ(r->image.digest, results[0]->image.digest);
  }
  EXPECT_EQ(counting->manifests.load(), 1);
  {
    std::lock_guard lock(counting->mutex);
    EXPECT_EQ(counting->blobs.size(), 4u);  // Config and three layers.
    for (const auto& [digest, count] : counting->blobs) {
      EXPECT_EQ(count, 1) << digest;
    }
  }

  // Two tags of the same content, pulled at once into a fresh store: each layer still once.
  auto counting2 = std::make_shared<CountingRegistry>(std::make_shared<RegistryClient>(),
                                                      std::chrono::milliseconds(100));
  ImageStore& fresh = open(counting2, {}, "fresh");
  Result<PulledImage> a = fail(ErrorCode::kInternal, "not run");
  Result<PulledImage> b = fail(ErrorCode::kInternal, "not run");
  {
    std::jthread ta([&] { a = fresh.pull(ref("busybox:v1")); });
    std::jthread tb([&] { b = fresh.pull(ref("busybox:v1-copy")); });
  }
  ASSERT_TRUE(a) << a.error().message();
  ASSERT_TRUE(b) << b.error().message();
  EXPECT_EQ(a->image.digest, b->image.digest);
  std::lock_guard lock(counting2->mutex);
  for (const Descriptor& layer : a->image.layers) {
    EXPECT_EQ(counting2->blobs[layer.digest.str()], 1) << layer.digest.str();
  }
  auto image = fresh.image(a->image.digest);
  ASSERT_TRUE(image);
  EXPECT_EQ(image->names.size(), 2u);
}

TEST_F(ImageStoreTest, GarbageCollectionRemovesLeastRecentlyUsedWithinBudgetAndKeepsInUse) {
  ManualClock clock;
  ImageStoreOptions options;
  options.clock = &clock;
  ImageStore& store = open(nullptr, options);
  std::map<char, Image> images;
  for (char c : {'a', 'b', 'c'}) {
    auto pulled = store.pull(ref(std::string("gc-") + c + ":v1"));
    ASSERT_TRUE(pulled) << pulled.error().message();
    images[c] = pulled->image;
    clock.advanceMs(1000);
  }
  // Use a again: b is now the least recently used, then c.
  ASSERT_TRUE(store.prepareRootfs(images['a'].digest, container("a")));
  clock.advanceMs(1000);
  ASSERT_TRUE(store.releaseRootfs(container("a")));
  // c is in use from here on.
  auto mountC = store.prepareRootfs(images['c'].digest, container("c"));
  ASSERT_TRUE(mountC) << mountC.error().message();

  int64_t usage = store.diskUsage();
  EXPECT_GE(usage, images['a'].diskBytes + images['b'].diskBytes + images['c'].diskBytes);
  // Room for all but half of b: only b has to go.
  auto gc = store.collectGarbage(usage - images['b'].diskBytes / 2);
  ASSERT_TRUE(gc) << gc.error().message();
  EXPECT_EQ(gc->removedImages, std::vector<Digest>{images['b'].digest});
  EXPECT_EQ(gc->freedBytes, images['b'].diskBytes);
  EXPECT_FALSE(store.image(images['b'].digest));
  EXPECT_FALSE(fs::exists(images['b'].layerDirs[0]));
  EXPECT_TRUE(store.image(images['a'].digest));
  EXPECT_TRUE(fs::exists(images['a'].layerDirs[0]));
  EXPECT_FALSE(store.find(ref("gc-b:v1")));

  // A budget nothing fits: a goes, c stays because a container uses it.
  gc = store.collectGarbage(1);
  ASSERT_TRUE(gc);
  EXPECT_EQ(gc->removedImages, std::vector<Digest>{images['a'].digest});
  EXPECT_EQ(gc->keptInUse, std::vector<Digest>{images['c'].digest});
  EXPECT_EQ(gc->usageBytes, images['c'].diskBytes);
  EXPECT_EQ(*fs::readFile(mountC->rootfs + "/payload"), randomBytes(300000, 102));

  ASSERT_TRUE(store.releaseRootfs(container("c")));
  gc = store.collectGarbage(1);
  ASSERT_TRUE(gc);
  EXPECT_EQ(gc->removedImages, std::vector<Digest>{images['c'].digest});
  EXPECT_EQ(store.diskUsage(), 0);
  EXPECT_TRUE(store.images().empty());
  // The options' budget is the default; 0 (no limit) removes nothing.
  ASSERT_TRUE(store.pull(ref("gc-a:v1")));
  gc = store.collectGarbage();
  ASSERT_TRUE(gc);
  EXPECT_TRUE(gc->removedImages.empty());
}

TEST_F(ImageStoreTest, StoreSurvivesRestartWithLeasesAndCleansStaging) {
  Digest digest;
  std::string dir = container("kept");
  std::string root;
  {
    ImageStore& store = open();
    root = store.root();
    auto pulled = store.pull(ref("busybox:v1"));
    ASSERT_TRUE(pulled) << pulled.error().message();
    digest = pulled->image.digest;
    ASSERT_TRUE(store.prepareRootfs(digest, dir));
    // A second store on the same root is refused while this one is open.
    auto second = ImageStore::open({.root = root}, nullptr);
    ASSERT_FALSE(second);
    EXPECT_EQ(second.error().code(), ErrorCode::kUnavailable);
    stores_.clear();  // "Crash": the mount and the lease stay.
  }
  // Leftovers of an interrupted unpack and download.
  ASSERT_TRUE(fs::makeDirs(root + "/tmp/layer-deadbeef-123456/usr"));
  ASSERT_TRUE(testing::writeFileInto(root + "/tmp", "abc.blob.partial-XXXX", "half"));
  ASSERT_TRUE(fs::makeDirs(root + "/layers/not-a-layer"));

  ImageStore& store = open();
  EXPECT_TRUE(fs::listDir(root + "/tmp").empty());
  EXPECT_FALSE(fs::exists(root + "/layers/not-a-layer"));
  auto image = store.find(ref("busybox:v1"));
  ASSERT_TRUE(image) << image.error().message();
  EXPECT_EQ(image->digest, digest);
  auto gc = store.collectGarbage(1);
  ASSERT_TRUE(gc);
  EXPECT_TRUE(gc->removedImages.empty());         // The recovered lease protects it.
  EXPECT_TRUE(store.prepareRootfs(digest, dir));  // Still mounted: returned as is.
  ASSERT_TRUE(store.releaseRootfs(dir));
  EXPECT_FALSE(fs::isMountPoint(dir + "/rootfs"));
  gc = store.collectGarbage(1);
  ASSERT_TRUE(gc);
  EXPECT_EQ(gc->removedImages.size(), 1u);
}

TEST_F(ImageStoreTest, ImportsDockerSaveArchive) {
  std::string archive = dir_.path() + "/saved.tar";
  ASSERT_TRUE(suite->builder->copy("v1", "docker-archive:" + archive + ":test/saved:v1"));
  ImageStore& store = open(nullptr, {}, "imported");
  auto imported = store.importArchive(archive);
  ASSERT_TRUE(imported) << imported.error().message();
  ASSERT_EQ(imported->size(), 1u);
  const Image& image = (*imported)[0];
  EXPECT_EQ(image.names, std::vector<std::string>{"docker.io/test/saved:v1"});
  EXPECT_EQ(image.config.cmd, std::vector<std::string>{"sh"});
  auto mount = store.prepareRootfs(image.digest, container("saved"));
  ASSERT_TRUE(mount) << mount.error().message();
  EXPECT_TRUE(fs::exists(mount->rootfs + "/bin/busybox"));
  EXPECT_FALSE(fs::exists(mount->rootfs + "/data/a"));
  EXPECT_EQ(*fs::readFile(mount->rootfs + "/opq/new"), "new");
  EXPECT_FALSE(fs::exists(mount->rootfs + "/opq/old"));
  ASSERT_TRUE(store.releaseRootfs(container("saved")));
  // Importing again changes nothing.
  auto again = store.importArchive(archive);
  ASSERT_TRUE(again);
  EXPECT_EQ((*again)[0].digest, image.digest);
  EXPECT_EQ(store.images().size(), 1u);
}

TEST_F(ImageStoreTest, DockerSaveLayerThatDoesNotMatchItsDiffIdIsRefused) {
  std::string good = dir_.path() + "/good.tar";
  std::string evil = dir_.path() + "/evil.tar";
  ASSERT_TRUE(testing::writeTar(good, {{"file", TarEntry::Type::kFile, "good", 0644}}));
  ASSERT_TRUE(testing::writeTar(evil, {{"file", TarEntry::Type::kFile, "evil", 0644}}));
  Digest diffId = *sha256File(good);
  std::string config =
      R"({"os":"linux","architecture":"amd64","rootfs":{"type":"layers","diff_ids":[")" +
      diffId.str() + R"("]}})";
  std::string configName = std::string(sha256Of(config).hex()) + ".json";
  std::string archive = dir_.path() + "/tampered.tar";
  ASSERT_TRUE(testing::writeTar(
      archive,
      {{"manifest.json", TarEntry::Type::kFile,
        R"([{"Config":")" + configName + R"(","RepoTags":["x:1"],"Layers":["l1/layer.tar"]}])",
        0644},
       {configName, TarEntry::Type::kFile, config, 0644},
       {"l1/layer.tar", TarEntry::Type::kFile, *fs::readFile(evil), 0644}}));
  ImageStore& store = open(nullptr, {}, "imported");
  auto imported = store.importArchive(archive);
  ASSERT_FALSE(imported);
  EXPECT_TRUE(isDigestMismatch(imported.error())) << imported.error().message();
  EXPECT_NE(imported.error().message().find(diffId.str()), std::string::npos);
  EXPECT_TRUE(store.images().empty());
}

// Writes an OCI layout archive by hand: a zstd and a gzip layer, optionally with a corrupt blob.
std::string ociArchive(const std::string& dir, bool corrupt) {
  std::string plain1 = dir + "/l1.tar";
  std::string zstd1 = dir + "/l1.tar.zst";
  std::string gzip2 = dir + "/l2.tar.gz";
  std::vector<TarEntry> l1 = {{"zfile", TarEntry::Type::kFile, "from zstd", 0644}};
  std::vector<TarEntry> l2 = {{"gfile", TarEntry::Type::kFile, "from gzip", 0644}};
  EXPECT_TRUE(testing::writeTar(plain1, l1));
  EXPECT_TRUE(testing::writeTar(zstd1, l1, Compression::kZstd));
  EXPECT_TRUE(testing::writeTar(gzip2, l2, Compression::kGzip));
  std::string z = *fs::readFile(zstd1);
  std::string g = *fs::readFile(gzip2);
  std::string config = R"({"os":"linux","architecture":"amd64","config":{"Cmd":["/zfile"]},)"
                       R"("rootfs":{"type":"layers","diff_ids":[")" +
                       sha256File(plain1)->str() + R"(",")" + sha256File(plain1)->str() + R"("]}})";
  nlohmann::json manifest = {{"schemaVersion", 2},
                             {"mediaType", media_type::kOciManifest},
                             {"config",
                              {{"mediaType", media_type::kOciConfig},
                               {"digest", sha256Of(config).str()},
                               {"size", config.size()}}},
                             {"layers",
                              {{{"mediaType", media_type::kOciLayerZstd},
                                {"digest", sha256Of(z).str()},
                                {"size", z.size()}},
                               {{"mediaType", media_type::kOciLayerGzip},
                                {"digest", sha256Of(g).str()},
                                {"size", g.size()}}}}};
  std::string m = manifest.dump();
  nlohmann::json index = {
      {"schemaVersion", 2},
      {"manifests",
       {{{"mediaType", media_type::kOciManifest},
         {"digest", sha256Of(m).str()},
         {"size", m.size()},
         {"annotations", {{"org.opencontainers.image.ref.name", "example.com/z/app:1"}}}}}}};
  auto blob = [](const std::string& bytes) {
    return "blobs/sha256/" + std::string(sha256Of(bytes).hex());
  };
  std::string zContent = z;
  if (corrupt) {
    zContent[zContent.size() / 2] ^= 0x01;
  }
  std::string archive = dir + (corrupt ? "/oci-corrupt.tar" : "/oci.tar");
  EXPECT_TRUE(testing::writeTar(
      archive, {{"oci-layout", TarEntry::Type::kFile, R"({"imageLayoutVersion":"1.0.0"})", 0644},
                {"index.json", TarEntry::Type::kFile, index.dump(), 0644},
                {blob(m), TarEntry::Type::kFile, m, 0644},
                {blob(config), TarEntry::Type::kFile, config, 0644},
                {blob(z), TarEntry::Type::kFile, zContent, 0644},
                {blob(g), TarEntry::Type::kFile, g, 0644}}));
  return archive;
}

TEST_F(ImageStoreTest, ImportsOciLayoutArchiveWithZstdAndGzipLayers) {
  ImageStore& store = open(nullptr, {}, "imported");
  auto imported = store.importArchive(ociArchive(dir_.path(), false));
  ASSERT_TRUE(imported) << imported.error().message();
  ASSERT_EQ(imported->size(), 1u);
  const Image& image = (*imported)[0];
  EXPECT_EQ(image.names, std::vector<std::string>{"example.com/z/app:1"});
  auto mount = store.prepareRootfs(image.digest, container("oci"));
  ASSERT_TRUE(mount) << mount.error().message();
  EXPECT_EQ(*fs::readFile(mount->rootfs + "/zfile"), "from zstd");
  EXPECT_EQ(*fs::readFile(mount->rootfs + "/gfile"), "from gzip");
  ASSERT_TRUE(store.releaseRootfs(container("oci")));

  ImageStore& other = open(nullptr, {}, "corrupt");
  auto corrupt = other.importArchive(ociArchive(dir_.path(), true));
  ASSERT_FALSE(corrupt);
  EXPECT_TRUE(isDigestMismatch(corrupt.error())) << corrupt.error().message();
  EXPECT_TRUE(other.images().empty());
}

TEST_F(ImageStoreTest, ImportsSkopeoOciArchive) {
  std::string archive = dir_.path() + "/skopeo-oci.tar";
  ASSERT_TRUE(suite->builder->copy("v1", "oci-archive:" + archive + ":v1"));
  ImageStore& store = open(nullptr, {}, "imported");
  auto imported = store.importArchive(archive);
  ASSERT_TRUE(imported) << imported.error().message();
  ASSERT_EQ(imported->size(), 1u);
  EXPECT_TRUE(store.image((*imported)[0].digest));
  auto mount = store.prepareRootfs((*imported)[0].digest, container("skopeo"));
  ASSERT_TRUE(mount) << mount.error().message();
  EXPECT_TRUE(fs::exists(mount->rootfs + "/bin/busybox"));
  ASSERT_TRUE(store.releaseRootfs(container("skopeo")));
}

// The whole pull through bearer-token auth: a small token-protected registry serving one image.
TEST_F(ImageStoreTest, PullsThroughBearerTokenAuth) {
  std::string layerPath = dir_.path() + "/layer.tar.gz";
  ASSERT_TRUE(testing::writeTar(layerPath, {{"hello", TarEntry::Type::kFile, "token ok", 0644}},
                                Compression::kGzip));
  std::string layer = *fs::readFile(layerPath);
  std::string config = R"({"os":"linux","architecture":"amd64","config":{"Cmd":["/hello"]}})";
  nlohmann::json manifestJson = {{"schemaVersion", 2},
                                 {"mediaType", media_type::kOciManifest},
                                 {"config",
                                  {{"mediaType", media_type::kOciConfig},
                                   {"digest", sha256Of(config).str()},
                                   {"size", config.size()}}},
                                 {"layers",
                                  {{{"mediaType", media_type::kOciLayerGzip},
                                    {"digest", sha256Of(layer).str()},
                                    {"size", layer.size()}}}}};
  std::string manifest = manifestJson.dump();
  std::atomic<int> tokens{0};
  std::string realm;
  testing::FakeHttpServer server(
      [&](const testing::FakeHttpServer::Request& r) -> testing::FakeHttpServer::Response {
        if (r.path == "/token") {
          ++tokens;
          if (testing::queryParam(r.query, "scope") != "repository:private/app:pull") {
            return {400, {}, ""};
          }
          return {200, {}, R"({"access_token":"secret-token"})"};
        }
        auto auth = r.headers.find("authorization");
        if (auth == r.headers.end() || auth->second != "Bearer secret-token") {
          return {401,
                  {{"WWW-Authenticate",
                    "Bearer realm=\"" + realm +
                        "\",service=\"test\",scope=\"repository:private/app:pull\""}},
                  ""};
        }
        if (r.path == "/v2/private/app/manifests/v1") {
          return {200, {{"Content-Type", std::string(media_type::kOciManifest)}}, manifest};
        }
        if (r.path == "/v2/private/app/blobs/" + sha256Of(config).str()) {
          return {200, {}, config};
        }
        if (r.path == "/v2/private/app/blobs/" + sha256Of(layer).str()) {
          return {200, {}, layer};
        }
        return {404, {}, ""};
      });
  realm = "http://" + server.host() + "/token";
  ImageStore& store = open();
  auto pulled = store.pull(server.host() + "/private/app:v1");
  ASSERT_TRUE(pulled) << pulled.error().message();
  EXPECT_EQ(tokens.load(), 1);
  EXPECT_EQ(*fs::readFile(pulled->image.layerDirs[0] + "/hello"), "token ok");
}

}  // namespace
}  // namespace skiff::agent::image
