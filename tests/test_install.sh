#!/usr/bin/env bash
# The installed package, as a program that embeds lowbit sees it:
#   1. `cmake --install` into a temporary prefix installs exactly the library,
#      the public headers, the CLI, the CMake package and lowbit.pc;
#   2. lowbit.h compiles on its own as C99 (-pedantic) and as C++;
#   3. examples/ configures with find_package(lowbit) from that prefix, builds
#      and runs (embed_train checks its own results and exits 1 otherwise);
#      without one of lowbit's dependencies, find_package(lowbit) says which;
#   4. examples/embed_train.c compiles and links with
#      `pkg-config --cflags --libs --static lowbit` alone, and runs.
# Any difference fails the test; nothing here is optional.
#   test_install.sh BUILD_DIR SOURCE_DIR C_COMPILER INSTALL_LIBDIR
set -euo pipefail
build=$1 src=$2 cc=$3 libdir=$4
work=$(mktemp -d "${TMPDIR:-/tmp}/lowbit-install.XXXXXX")
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix
step() { echo "== $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

step "cmake --install $build --prefix $prefix"
cmake --install "$build" --prefix "$prefix" >"$work/install.log" || { cat "$work/install.log"; fail "cmake --install"; }
(cd "$prefix" && find . -type f | sed 's|^\./||' | sort) >"$work/installed"
sort >"$work/expected" <<LIST
bin/lowbit
include/lowbit.h
include/lowbit_version.h
$libdir/liblowbit.a
$libdir/cmake/lowbit/lowbitConfig.cmake
$libdir/cmake/lowbit/lowbitConfigVersion.cmake
$libdir/cmake/lowbit/lowbitDependencies.cmake
$libdir/cmake/lowbit/lowbitTargets.cmake
$libdir/cmake/lowbit/lowbitTargets-$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build/CMakeCache.txt" | tr 'A-Z' 'a-z').cmake
$libdir/pkgconfig/lowbit.pc
LIST
diff -u "$work/expected" "$work/installed" || fail "the installed files differ from the list above"

export PKG_CONFIG_PATH=$prefix/$libdir/pkgconfig
version=$(pkg-config --modversion lowbit)
grep -q "^#define LOWBIT_VERSION_STRING \"$version\"$" "$prefix/include/lowbit_version.h" ||
  fail "lowbit_version.h does not say $version (lowbit.pc's version)"
[ "$("$prefix/bin/lowbit" --version)" = "lowbit $version" ] || fail "bin/lowbit --version is not 'lowbit $version'"

step "lowbit.h alone, as C99 and as C++"
printf '#include <lowbit.h>\nint main(void) { return lowbit_version() == 0; }\n' >"$work/header.c"
"$cc" -std=c99 -pedantic -Wall -Wextra -Werror -fsyntax-only -I"$prefix/include" "$work/header.c"
c++ -std=c++11 -pedantic -Wall -Wextra -Werror -fsyntax-only -I"$prefix/include" -x c++ "$work/header.c"

step "examples/ with find_package(lowbit)"
cmake -S "$src/examples" -B "$work/examples" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" \
  -DCMAKE_BUILD_TYPE=Release >"$work/configure.log" 2>&1 || { cat "$work/configure.log"; fail "configuring examples/"; }
found=$(sed -n 's/^lowbit_DIR:PATH=//p' "$work/examples/CMakeCache.txt")
[ "$found" = "$prefix/$libdir/cmake/lowbit" ] || fail "find_package(lowbit) found '$found', not the package just installed"
cmake --build "$work/examples" >"$work/build.log" 2>&1 || { cat "$work/build.log"; fail "building examples/"; }
"$work/examples/embed_train"

step "find_package(lowbit) when one of lowbit's dependencies is missing"
# pkg-config finding nothing stands for libyaml not being installed: the
# package must report itself not found, with the reason, rather than give a
# target that fails at link time.
if PKG_CONFIG_LIBDIR=/nonexistent cmake -S "$src/examples" -B "$work/examples-nodeps" \
     -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" >"$work/nodeps.log" 2>&1; then
  fail "find_package(lowbit) succeeded without libyaml"
fi
grep -q "pkg-config module yaml-0.1 not found" "$work/nodeps.log" ||
  { cat "$work/nodeps.log"; fail "find_package(lowbit) did not say which dependency is missing"; }

step "embed_train.c with pkg-config --cflags --libs --static lowbit"
[ "$(pkg-config --variable=pcfiledir lowbit)" = "$prefix/$libdir/pkgconfig" ] || fail "pkg-config found another lowbit.pc"
# shellcheck disable=SC2046 # the flags are words
"$cc" -std=c99 -Wall -Wextra -Werror "$src/examples/embed_train.c" -o "$work/embed_train_pc" \
  $(pkg-config --cflags --libs --static lowbit)
"$work/embed_train_pc"
echo "test_install: ok"
