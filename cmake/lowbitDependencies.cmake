# The libraries lowbit links, described once for two readers: lowbit's own
# build (CMakeLists.txt includes this file) and programs that use the
# installed package (find_package(lowbit) includes it from lowbitConfig.cmake,
# so that lowbit::lowbit's dependencies are found on the user's machine).
#
# For each dependency: how CMake finds it, the imported target lowbit links
# (appended to LOWBIT_DEPENDENCY_TARGETS), and what lowbit.pc says about it
# (LOWBIT_PC_REQUIRES_PRIVATE: pkg-config modules; LOWBIT_PC_LIBS_PRIVATE:
# linker flags for those without a pkg-config module).
#
# In lowbit's build a missing dependency stops the configure step; inside
# find_package(lowbit) it makes lowbit_FOUND false with the reason in
# lowbit_NOT_FOUND_MESSAGE, as find_dependency does.

include(CMakeFindDependencyMacro)

macro(lowbit_missing_dependency why)
  if(CMAKE_FIND_PACKAGE_NAME STREQUAL "lowbit")
    set(lowbit_FOUND FALSE)
    set(lowbit_NOT_FOUND_MESSAGE "${why}")
    return()
  else()
    message(FATAL_ERROR "${why}")
  endif()
endmacro()

macro(lowbit_find_package)
  if(CMAKE_FIND_PACKAGE_NAME STREQUAL "lowbit")
    find_dependency(${ARGV}) # returns from this file when not found
  else()
    find_package(${ARGV} REQUIRED)
  endif()
endmacro()

set(LOWBIT_DEPENDENCY_TARGETS "")
set(LOWBIT_PC_REQUIRES_PRIVATE "")
set(LOWBIT_PC_LIBS_PRIVATE "")

# OpenMP: lowbit's parallel loops.
lowbit_find_package(OpenMP COMPONENTS C)
list(APPEND LOWBIT_DEPENDENCY_TARGETS OpenMP::OpenMP_C)
list(APPEND LOWBIT_PC_LIBS_PRIVATE ${OpenMP_C_FLAGS})

# A library without a CMake package or pkg-config module of its own, as the
# imported target TARGET: its file (found as NAME, HINTS first) and the
# directory of HEADER. VAR_LIBRARY and VAR_INCLUDE_DIR are the cache entries.
macro(lowbit_imported_library target var name header why)
  if(NOT TARGET ${target})
    find_library(${var}_LIBRARY NAMES ${name} HINTS ${ARGN})
    find_path(${var}_INCLUDE_DIR ${header} HINTS ${ARGN})
    if(NOT ${var}_LIBRARY OR NOT ${var}_INCLUDE_DIR)
      lowbit_missing_dependency("${why}")
    endif()
    add_library(${target} UNKNOWN IMPORTED)
    set_target_properties(${target} PROPERTIES
      IMPORTED_LOCATION "${${var}_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${${var}_INCLUDE_DIR}")
  endif()
  list(APPEND LOWBIT_DEPENDENCY_TARGETS ${target})
endmacro()

# oneDNN (Debian's libdnnl-dev, built on the OpenMP runtime: the same pool of
# threads): the GEMM engine, src/autograd/gemm.c.
lowbit_imported_library(lowbit::dnnl LOWBIT_DNNL dnnl oneapi/dnnl/dnnl.h
                        "oneDNN not found: apt-get install libdnnl-dev")
get_filename_component(LOWBIT_DNNL_DIR "${LOWBIT_DNNL_LIBRARY}" DIRECTORY)
list(APPEND LOWBIT_PC_LIBS_PRIVATE "-L${LOWBIT_DNNL_DIR}" -ldnnl)

# OpenBLAS: take the OpenMP build on purpose. Its GEMM threads are OpenMP
# threads, so they share one pool (and OMP_NUM_THREADS) with lowbit's own
# parallel loops instead of oversubscribing the cores with a second,
# pthread-based pool. Debian's pkg-config module "openblas" follows whichever
# build update-alternatives selected, so lowbit.pc names the directory (and
# puts it on the run path) instead.
lowbit_imported_library(lowbit::openblas LOWBIT_OPENBLAS openblas cblas.h
                        "OpenBLAS (OpenMP build) not found: apt-get install libopenblas-openmp-dev"
                        /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp
                        /usr/include/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp)
get_filename_component(LOWBIT_OPENBLAS_DIR "${LOWBIT_OPENBLAS_LIBRARY}" DIRECTORY)
list(APPEND LOWBIT_PC_LIBS_PRIVATE "-L${LOWBIT_OPENBLAS_DIR}" "-Wl,-rpath,${LOWBIT_OPENBLAS_DIR}" -lopenblas)

# HDF5: checkpoints. Debian's default (serial) build, as h5cc and hdf5.pc give it.
lowbit_find_package(HDF5 COMPONENTS C)
list(APPEND LOWBIT_DEPENDENCY_TARGETS HDF5::HDF5)
list(APPEND LOWBIT_PC_REQUIRES_PRIVATE hdf5)

# Through pkg-config: libyaml (configs), jansson (metrics as JSON lines,
# tokenizer.json), PCRE2 (tokenizer.json regexes), utf8proc (tokenizer.json
# Unicode normalization), zstd (export: the compressibility report and container).
lowbit_find_package(PkgConfig)
foreach(module IN ITEMS yaml-0.1 jansson libpcre2-8 libutf8proc libzstd)
  string(MAKE_C_IDENTIFIER "LOWBIT_PC_${module}" prefix)
  pkg_check_modules(${prefix} QUIET IMPORTED_TARGET ${module})
  if(NOT ${prefix}_FOUND)
    lowbit_missing_dependency("pkg-config module ${module} not found (Debian: libyaml-dev, libjansson-dev, libpcre2-dev, libutf8proc-dev, libzstd-dev)")
  endif()
  list(APPEND LOWBIT_DEPENDENCY_TARGETS PkgConfig::${prefix})
  list(APPEND LOWBIT_PC_REQUIRES_PRIVATE ${module})
endforeach()

# MPI (Open MPI or MPICH), only in a build with LOWBIT_MPI: src/dist.
if(LOWBIT_MPI)
  lowbit_find_package(MPI COMPONENTS C)
  list(APPEND LOWBIT_DEPENDENCY_TARGETS MPI::MPI_C)
  list(APPEND LOWBIT_PC_LIBS_PRIVATE ${MPI_C_LIBRARIES})
endif()

list(APPEND LOWBIT_DEPENDENCY_TARGETS m)
list(APPEND LOWBIT_PC_LIBS_PRIVATE -lm)
