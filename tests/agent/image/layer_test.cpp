// Layer unpacking: compression formats, whiteouts and opaque directories in overlayfs form, and
// archives that try to write outside the layer.

#include "agent/image/layer.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "agent/image/fs_util.h"
#include "testing/local_registry.h"
#include "testing/requirements.h"

namespace skiff::agent::image {
namespace {

using testing::TarEntry;
using testing::TempDir;
using testing::writeTar;
using Type = TarEntry::Type;

class LayerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIFF_REQUIRE_ROOT("device nodes, ownership, trusted.* xattrs");
    ASSERT_TRUE(fs::makeDirs(dir_.path() + "/out"));
  }
  std::string out() const { return dir_.path() + "/out"; }
  std::string tar(const std::vector<TarEntry>& entries, Compression c = Compression::kNone) {
    std::string path = dir_.path() + "/layer" + std::to_string(++count_) + ".tar";
    Status s = writeTar(path, entries, c);
    EXPECT_TRUE(s) << (s ? "" : s.error().message());
    return path;
  }

  TempDir dir_;
  int count_ = 0;
};

TEST_F(LayerTest, UnpacksPlainGzipAndZstd) {
  std::vector<TarEntry> entries = {{"etc/", Type::kDir, "", 0755},
                                   {"etc/hello", Type::kFile, "hello\n", 0640},
                                   {"./bin/tool", Type::kFile, "#!/bin/sh\n", 0755},
                                   {"/abs/file", Type::kFile, "abs", 0644},
                                   {"bin/link", Type::kSymlink, "tool", 0777}};
  for (Compression c : {Compression::kNone, Compression::kGzip, Compression::kZstd}) {
    std::string dest = dir_.path() + "/c" + std::to_string(static_cast<int>(c));
    ASSERT_TRUE(fs::makeDirs(dest));
    auto stats = unpackLayer(tar(entries, c), dest);
    ASSERT_TRUE(stats) << stats.error().message();
    EXPECT_EQ(*fs::readFile(dest + "/etc/hello"), "hello\n");
    EXPECT_EQ(*fs::readFile(dest + "/bin/tool"), "#!/bin/sh\n");
    EXPECT_EQ(*fs::readFile(dest + "/abs/file"), "abs");
    struct stat st {};
    ASSERT_EQ(::lstat((dest + "/etc/hello").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0640u);
    ASSERT_EQ(::lstat((dest + "/bin/link").c_str(), &st), 0);
    EXPECT_TRUE(S_ISLNK(st.st_mode));
    EXPECT_EQ(stats->bytes, 6 + 10 + 3);
  }
}

TEST_F(LayerTest, WhiteoutsBecomeCharDevicesAndOpaqueDirsGetTheXattr) {
  auto stats = unpackLayer(tar({{"dir/", Type::kDir, "", 0755},
                                {"dir/.wh.gone", Type::kFile, "", 0644},
                                {"deep/er/.wh.also-gone", Type::kFile, "", 0644},
                                {"opq/", Type::kDir, "", 0755},
                                {"opq/.wh..wh..opq", Type::kFile, "", 0644},
                                {"opq/new", Type::kFile, "new", 0644},
                                {".wh..wh.plnk/123", Type::kFile, "", 0644}}),
                           out());
  ASSERT_TRUE(stats) << stats.error().message();
  for (std::string path : {"/dir/gone", "/deep/er/also-gone"}) {
    struct stat st {};
    ASSERT_EQ(::lstat((out() + path).c_str(), &st), 0) << path;
    EXPECT_TRUE(S_ISCHR(st.st_mode)) << path;
    EXPECT_EQ(st.st_rdev, makedev(0, 0)) << path;
  }
  EXPECT_FALSE(fs::exists(out() + "/dir/.wh.gone"));
  char value[8] = {0};
  ASSERT_EQ(::lgetxattr((out() + "/opq").c_str(), "trusted.overlay.opaque", value, sizeof value),
            1);
  EXPECT_EQ(value[0], 'y');
  EXPECT_FALSE(fs::exists(out() + "/opq/.wh..wh..opq"));
  EXPECT_EQ(*fs::readFile(out() + "/opq/new"), "new");
  EXPECT_FALSE(fs::exists(out() + "/.wh..wh.plnk"));
}

TEST_F(LayerTest, DotDotEntriesAreRefused) {
  auto stats = unpackLayer(tar({{"../escaped", Type::kFile, "x", 0644}}), out());
  ASSERT_FALSE(stats);
  EXPECT_EQ(stats.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_FALSE(fs::exists(dir_.path() + "/escaped"));
}

TEST_F(LayerTest, NothingIsWrittenThroughASymlink) {
  std::string outside = dir_.path() + "/outside";
  ASSERT_TRUE(fs::makeDirs(outside));
  ASSERT_TRUE(testing::writeFileInto(outside, "victim", "keep me"));
  // libarchive either refuses or replaces the symlink with a directory; never writes outside.
  (void)unpackLayer(
      tar({{"link", Type::kSymlink, outside, 0777}, {"link/planted", Type::kFile, "x", 0644}}),
      out());
  EXPECT_FALSE(fs::exists(outside + "/planted"));

  ASSERT_TRUE(fs::removeTree(out()));
  ASSERT_TRUE(fs::makeDirs(out()));
  auto viaWhiteout = unpackLayer(
      tar({{"link", Type::kSymlink, outside, 0777}, {"link/.wh.victim", Type::kFile, "", 0644}}),
      out());
  ASSERT_FALSE(viaWhiteout);
  EXPECT_EQ(*fs::readFile(outside + "/victim"), "keep me");

  ASSERT_TRUE(fs::removeTree(out()));
  ASSERT_TRUE(fs::makeDirs(out()));
  auto viaOpaque = unpackLayer(
      tar({{"link", Type::kSymlink, outside, 0777}, {"link/.wh..wh..opq", Type::kFile, "", 0644}}),
      out());
  ASSERT_FALSE(viaOpaque);
  char value[8];
  EXPECT_LT(::lgetxattr(outside.c_str(), "trusted.overlay.opaque", value, sizeof value), 0);
}

TEST_F(LayerTest, GarbageIsAnError) {
  std::string path = dir_.path() + "/garbage";
  ASSERT_TRUE(testing::writeFileInto(dir_.path(), "garbage", std::string(5000, '\x07')));
  auto stats = unpackLayer(path, out());
  ASSERT_FALSE(stats);
}

}  // namespace
}  // namespace skiff::agent::image
