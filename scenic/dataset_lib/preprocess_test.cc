// The pp-string parser and registry (preprocess.h): argument types, errors that name the
// op and its position, "did you mean" for unknown ops and keywords.
#include "scenic/dataset_lib/preprocess.h"

#include <gtest/gtest.h>

#include "scenic/common_lib/testing.h"
#include "scenic/dataset_lib/transforms.h"

namespace scenic::dataset {
namespace {

using scenic::testing::error_of;

// A registry whose op `rec` records the arguments it was built with.
struct Recorder {
  PreprocessRegistry registry;
  std::vector<PpArgs> seen;
  Recorder() {
    registry.add("rec", [this](const PpArgs& a) {
      seen.push_back(a);
      return PreprocessOp([](Example& ex, Rng&) { ex.label += 1; });
    });
    registry.add("record_more", [](const PpArgs&) { return PreprocessOp(); });
  }
};

TEST(PpParser, ArgumentKinds) {
  Recorder r;
  auto chain = PreprocessChain::parse(
      "rec(224, -1.5e-1, 'bicubic', \"x|y\", (3, 4), [1,2,3], True, method='area', "
      "sizes=(480, 512,), enabled=False)| rec",
      r.registry);
  ASSERT_EQ(r.seen.size(), 2u);
  const PpArgs& a = r.seen[0];
  EXPECT_EQ(a.op, "rec");
  ASSERT_EQ(a.size(), 7u);
  EXPECT_EQ(a.number(0, "size"), 224);
  EXPECT_DOUBLE_EQ(a.number(1, "b"), -0.15);
  EXPECT_EQ(a.string(2, "interp", ""), "bicubic");
  EXPECT_EQ(a.string(3, "s", ""), "x|y");  // '|' inside quotes does not split ops
  EXPECT_EQ(a.numbers(4, "t"), (std::vector<double>{3, 4}));
  EXPECT_EQ(a.numbers(5, "l"), (std::vector<double>{1, 2, 3}));
  EXPECT_EQ(a.number(6, "flag"), 1);
  EXPECT_EQ(a.numbers(0, "size"), (std::vector<double>{224}));  // one number as a tuple
  EXPECT_EQ(a.string(99, "method", "bilinear"), "area");
  EXPECT_EQ(a.numbers(99, "sizes"), (std::vector<double>{480, 512}));
  EXPECT_EQ(a.number(99, "enabled"), 0);
  EXPECT_EQ(a.number(99, "absent", 7.5), 7.5);
  EXPECT_TRUE(r.seen[1].positional.empty() && r.seen[1].named.empty());

  // The chain runs its ops in order: two increments.
  Example ex;
  ex.label = 0;
  Rng rng(0);
  chain(ex, rng);
  EXPECT_EQ(ex.label, 2);
  EXPECT_EQ(chain.spec().substr(0, 4), "rec(");
}

TEST(PpParser, EmptySpecIsIdentity) {
  Recorder r;
  EXPECT_TRUE(PreprocessChain::parse("", r.registry).empty());
  EXPECT_TRUE(PreprocessChain::parse("  ", r.registry).empty());
  EXPECT_TRUE(r.seen.empty());
}

TEST(PpParser, UnknownOpNamesItSuggestsAndGivesPosition) {
  std::string msg = error_of([] { PreprocessChain::parse("decode|flip_lrr|value_range(-1, 1)"); });
  EXPECT_CONTAINS(msg, "unknown preprocessing op 'flip_lrr'");
  EXPECT_CONTAINS(msg, "did you mean 'flip_lr'");
  EXPECT_CONTAINS(msg, "op 2 of 'decode|flip_lrr|value_range(-1, 1)'");
}

TEST(PpParser, SyntaxErrors) {
  Recorder r;
  auto err = [&](const std::string& spec) {
    return error_of([&] { PreprocessChain::parse(spec, r.registry); });
  };
  EXPECT_CONTAINS(err("rec(224"), "expected ')'");
  EXPECT_CONTAINS(err("rec(224"), "op 1 of 'rec(224'");
  EXPECT_CONTAINS(err("rec||rec"), "empty op 2");
  EXPECT_CONTAINS(err("rec(foo)"), "expected a number, a quoted string or a tuple");
  EXPECT_CONTAINS(err("rec('abc)"), "unterminated string");
  EXPECT_CONTAINS(err("rec(a=1, 2)"), "positional argument after a keyword");
  EXPECT_CONTAINS(err("rec(a=1, a=2)"), "'a' given twice");
  EXPECT_CONTAINS(err("rec(1) x"), "unexpected text");
  EXPECT_CONTAINS(err("rec((1, 'a'))"), "expected a number");
  EXPECT_CONTAINS(err("rec(inf)"), "expected a number");
}

TEST(PpParser, BadArgumentsNameTheOp) {
  auto err = [](const std::string& spec) { return error_of([&] { PreprocessChain::parse(spec); }); };
  std::string msg = err("decode|resize(224, methd='bicubic')");
  EXPECT_CONTAINS(msg, "preprocessing op 'resize' (op 2 of");
  EXPECT_CONTAINS(msg, "unknown argument 'methd'");
  EXPECT_CONTAINS(msg, "did you mean 'method'");
  EXPECT_CONTAINS(err("resize()"), "missing argument 'size'");
  EXPECT_CONTAINS(err("resize('big')"), "argument 'size' must be a number or a tuple, got a string");
  EXPECT_CONTAINS(err("resize(224, 'cubic')"), "unknown resize method 'cubic'");
  EXPECT_CONTAINS(err("resize(224, method=3)"), "must be a quoted string, got a number");
  EXPECT_CONTAINS(err("resize((1, 2, 3))"), "must be a size or (height, width)");
  EXPECT_CONTAINS(err("resize(22.5)"), "positive integers");
  EXPECT_CONTAINS(err("flip_lr(0.5, 1, 2)"), "takes at most 1 positional argument(s), got 3");
  EXPECT_CONTAINS(err("resize(224, size=3)"), "given both by position and by name");
  EXPECT_CONTAINS(err("value_range(0, 1, 5, 5)"), "in_min and in_max must differ");
  EXPECT_CONTAINS(err("inception_crop(224, area_min=50, area_max=10)"), "area_min <= area_max");
  EXPECT_CONTAINS(err("normalize((1, 2), 3)"), "one number or 3");
}

TEST(PpParser, GlobalRegistryHasTheBuiltinOps) {
  const auto& reg = PreprocessRegistry::global();
  for (const char* name :
       {"decode", "resize", "resize_small", "central_crop", "random_crop", "inception_crop",
        "flip_lr", "random_crop_with_pad", "reflect_pad_crop", "value_range", "standardize",
        "normalize", "vgg_value_range", "color_jitter", "random_erasing", "randaug",
        "random_resize_multiscale", "random_size_crop", "detr_train_resize", "pad_to"}) {
    EXPECT_TRUE(reg.contains(name)) << name;
  }
  // A typical big_vision train spec builds.
  auto chain = PreprocessChain::parse(
      "decode|inception_crop(224)|flip_lr|randaug(2, 15)|value_range(-1, 1)");
  EXPECT_FALSE(chain.empty());
}

}  // namespace
}  // namespace scenic::dataset
