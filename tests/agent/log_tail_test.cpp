// The tail of a rotated log (src/agent/log_server.h): NAME, NAME.1 (newest rotated) .. NAME.N.

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "agent/log_server.h"

namespace skiff::agent {
namespace {

namespace fs = std::filesystem;

class LogTailTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("skiff-log-tail-" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    path_ = (dir_ / "stdout.log").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  void write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name, std::ios::binary) << text;
  }
  std::string tail(int64_t lines) {
    auto text = tailLog(path_, lines);
    EXPECT_TRUE(text) << text.error().message();
    return text ? *text : "<error>";
  }

  fs::path dir_;
  std::string path_;
};

TEST_F(LogTailTest, MissingLogIsEmpty) {
  EXPECT_EQ(tail(5), "");
  EXPECT_EQ(tail(-1), "");
  EXPECT_EQ(rotatedCount(path_), 0);
}

TEST_F(LogTailTest, LastLinesOfOneFile) {
  write("stdout.log", "one\ntwo\nthree\n");
  EXPECT_EQ(tail(0), "");
  EXPECT_EQ(tail(1), "three\n");
  EXPECT_EQ(tail(2), "two\nthree\n");
  EXPECT_EQ(tail(3), "one\ntwo\nthree\n");
  EXPECT_EQ(tail(10), "one\ntwo\nthree\n");
  EXPECT_EQ(tail(-1), "one\ntwo\nthree\n");
}

TEST_F(LogTailTest, UnterminatedLastLineCounts) {
  write("stdout.log", "one\ntwo\nthr");
  EXPECT_EQ(tail(1), "thr");
  EXPECT_EQ(tail(2), "two\nthr");
}

TEST_F(LogTailTest, EmptyLinesCount) {
  write("stdout.log", "one\n\n\nfour\n");
  EXPECT_EQ(tail(2), "\nfour\n");
  EXPECT_EQ(tail(3), "\n\nfour\n");
}

TEST_F(LogTailTest, SpansRotatedFilesNewestFirst) {
  write("stdout.log.2", "a\nb\n");
  write("stdout.log.1", "c\nd\n");
  write("stdout.log", "e\nf");
  EXPECT_EQ(rotatedCount(path_), 2);
  EXPECT_EQ(tail(2), "e\nf");
  EXPECT_EQ(tail(3), "d\ne\nf");
  EXPECT_EQ(tail(5), "b\nc\nd\ne\nf");
  EXPECT_EQ(tail(6), "a\nb\nc\nd\ne\nf");
  EXPECT_EQ(tail(100), "a\nb\nc\nd\ne\nf");
  EXPECT_EQ(tail(-1), "a\nb\nc\nd\ne\nf");
  EXPECT_EQ(findTailStart(path_, 3), (LogPosition{1, 2}));
  EXPECT_EQ(findTailStart(path_, 4), (LogPosition{1, 0}));
  EXPECT_EQ(findTailStart(path_, 100), (LogPosition{2, 0}));
  EXPECT_EQ(findTailStart(path_, 0), (LogPosition{0, 3}));
}

TEST_F(LogTailTest, FreshFileAfterRotation) {
  write("stdout.log.1", "x\ny\n");
  write("stdout.log", "");
  EXPECT_EQ(tail(1), "y\n");
  EXPECT_EQ(tail(2), "x\ny\n");
}

TEST_F(LogTailTest, LongLogReadAcrossBlocks) {
  std::string text;
  for (int i = 0; i < 20000; ++i) text += "line " + std::to_string(i) + "\n";
  write("stdout.log.1", text.substr(0, text.size() / 2 + 3));
  write("stdout.log", text.substr(text.size() / 2 + 3));
  EXPECT_EQ(tail(2), "line 19998\nline 19999\n");
  std::string last = tail(15000);
  EXPECT_TRUE(last.starts_with("line 5000\n")) << last.substr(0, 40);
  EXPECT_EQ(tail(-1), text);
}

}  // namespace
}  // namespace skiff::agent
