// Image pull throughput from a local registry (node agent issue: "Pull of a 200 MB, 5-layer
// image from the local registry >= 150 MB/s").
//
// Starts the Debian docker-registry on loopback, builds a 5-layer image of incompressible data
// (default 40 MiB per layer) with umoci, pushes it with skopeo, then pulls it into a fresh
// ImageStore several times and reports MB/s (10^6 bytes of layer blobs per second) for:
//   - download: fetch + SHA-256 verify of all blobs, in parallel, no unpacking;
//   - pull: the whole ImageStore::pull (download, verify, unpack, syncfs, rename, record);
//   - pull-nosync: the same without syncfs(2) before each layer's rename.
// The "unpacked" column restates the median in unpacked bytes per second.
// Needs root and docker-registry, umoci, skopeo, busybox-static (scripts/setup.sh).
//
// Usage: image_pull_bench [--layer-mib N] [--runs N] [--parallel N] [--compressible]

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "agent/image/fs_util.h"
#include "agent/image/image_store.h"
#include "agent/image/registry_client.h"
#include "bench_util.h"
#include "common/log.h"
#include "testing/local_registry.h"

namespace image = skiff::agent::image;

namespace {

std::string payload(size_t bytes, uint32_t seed, bool compressible) {
  std::mt19937_64 gen(seed);
  std::string out(bytes, '\0');
  if (!compressible) {
    for (size_t i = 0; i + 8 <= bytes; i += 8) {
      uint64_t v = gen();
      std::memcpy(out.data() + i, &v, 8);
    }
    return out;
  }
  // Words from a small vocabulary: gzip gets roughly 3:1, like typical binaries and text.
  static const char* kWords[] = {"alpha ",     "beta ",    "gamma ", "delta ",
                                 "container ", "image ",   "layer ", "skiff ",
                                 "registry ",  "overlay ", "\n",     "0x1f2e "};
  size_t pos = 0;
  while (pos < bytes) {
    const char* w = kWords[gen() % (sizeof kWords / sizeof kWords[0])];
    size_t n = std::min(std::strlen(w), bytes - pos);
    std::memcpy(out.data() + pos, w, n);
    pos += n;
  }
  return out;
}

double seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

int die(const std::string& what) {
  std::fprintf(stderr, "image_pull_bench: %s\n", what.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  int layerMib = 40;
  int runs = 3;
  int parallel = 4;
  bool compressible = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--layer-mib" && i + 1 < argc) {
      layerMib = std::atoi(argv[++i]);
    } else if (arg == "--runs" && i + 1 < argc) {
      runs = std::atoi(argv[++i]);
    } else if (arg == "--parallel" && i + 1 < argc) {
      parallel = std::atoi(argv[++i]);
    } else if (arg == "--compressible") {
      compressible = true;
    } else {
      return die("unknown argument " + arg);
    }
  }
  if (std::string missing = image::testing::missingPrerequisites(); !missing.empty()) {
    return die(missing);
  }
  skiff::log::init("image_pull_bench", skiff::log::Level::kWarn);
  image::testing::TempDir dir("skiff-image-bench");
  auto registry = image::testing::LocalRegistry::start(dir.path());
  if (!registry) {
    return die(registry.error().message());
  }
  std::string host = (*registry)->host();

  auto buildStart = std::chrono::steady_clock::now();
  image::testing::ImageBuilder builder(dir.path() + "/build");
  if (auto s = builder.create("bench"); !s) {
    return die(s.error().message());
  }
  for (int layer = 0; layer < 5; ++layer) {
    auto s = builder.addLayer("bench", [&](const std::string& root) -> skiff::Status {
      // Four files per layer.
      size_t each = static_cast<size_t>(layerMib) * 1024 * 1024 / 4;
      for (int f = 0; f < 4; ++f) {
        SKIFF_TRY_STATUS(image::testing::writeFileInto(
                             root, "layer" + std::to_string(layer) + "/file" + std::to_string(f),
                             payload(each, static_cast<uint32_t>(layer * 10 + f), compressible)),
                         "payload");
      }
      return {};
    });
    if (!s) {
      return die(s.error().message());
    }
  }
  std::string reference = host + "/bench/big:v1";
  if (auto s = builder.copy("bench", "docker://" + reference); !s) {
    return die(s.error().message());
  }
  std::fprintf(stderr, "built and pushed the image in %.1f s\n", seconds(buildStart));

  auto ref = *image::ImageReference::parse(reference);
  image::RegistryClient probe;
  auto manifest = probe.fetchManifest(ref);
  if (!manifest) {
    return die(manifest.error().message());
  }
  auto parsed = image::parseManifest(manifest->bytes, manifest->mediaType);
  if (!parsed) {
    return die(parsed.error().message());
  }
  int64_t blobBytes = 0;
  for (const auto& l : parsed->layers) {
    blobBytes += l.size;
  }
  double mb = static_cast<double>(blobBytes) / 1e6;
  double unpackedMb = 5.0 * layerMib * 1024 * 1024 / 1e6;
  std::printf(
      "image: %zu layers, %.1f MB of layer blobs (%.1f MB unpacked), %s data, "
      "%d parallel downloads\n",
      parsed->layers.size(), mb, unpackedMb, compressible ? "compressible" : "incompressible",
      parallel);

  struct Row {
    const char* name;
    std::vector<double> mbps;
  };
  std::vector<Row> rows = {
      {"download+verify", {}}, {"pull (syncfs)", {}}, {"pull (no syncfs)", {}}};
  for (int run = 0; run < runs; ++run) {
    // Download and verify only.
    {
      std::string out = dir.path() + "/download-" + std::to_string(run);
      (void)image::fs::makeDirs(out);
      std::vector<image::BlobRequest> requests;
      for (const auto& l : parsed->layers) {
        requests.push_back({l.digest, l.size, out + "/" + std::string(l.digest.hex())});
      }
      image::RegistryClient client;
      auto start = std::chrono::steady_clock::now();
      auto s = client.fetchBlobs(ref, requests, parallel, {});
      double t = seconds(start);
      if (!s) {
        return die(s.error().message());
      }
      rows[0].mbps.push_back(mb / t);
      (void)image::fs::removeTree(out);
    }
    for (int sync = 1; sync >= 0; --sync) {
      image::ImageStoreOptions options;
      options.root = dir.path() + "/store-" + std::to_string(run) + "-" + std::to_string(sync);
      options.parallelDownloads = parallel;
      options.syncLayers = sync == 1;
      auto store = image::ImageStore::open(options, std::make_shared<image::RegistryClient>());
      if (!store) {
        return die(store.error().message());
      }
      auto start = std::chrono::steady_clock::now();
      auto pulled = (*store)->pull(ref);
      double t = seconds(start);
      if (!pulled) {
        return die(pulled.error().message());
      }
      rows[sync == 1 ? 1 : 2].mbps.push_back(mb / t);
      store->reset();
      (void)image::fs::removeTree(options.root);
    }
  }
  std::printf("%-18s %10s %10s %10s %12s   (MB/s, %d runs)\n", "", "median", "min", "max",
              "unpacked", runs);
  for (Row& row : rows) {
    std::sort(row.mbps.begin(), row.mbps.end());
    double median = skiff::bench::percentile(row.mbps, 0.5);
    // The same run measured in unpacked bytes (equal to blob bytes for incompressible data).
    std::printf("%-18s %10.0f %10.0f %10.0f %12.0f\n", row.name, median, row.mbps.front(),
                row.mbps.back(), median * unpackedMb / mb);
  }
  return 0;
}
