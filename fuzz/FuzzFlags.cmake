# Compiler check and instrumentation for FAIRDRAW_FUZZ builds (included early by the top-level CMakeLists.txt).

# libFuzzer ships with clang (libclang-rt-14-dev); GCC has no -fsanitize=fuzzer.
if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  message(FATAL_ERROR "FAIRDRAW_FUZZ=ON needs clang: configure with -DCMAKE_CXX_COMPILER=clang++-14 "
                      "(got ${CMAKE_CXX_COMPILER_ID} ${CMAKE_CXX_COMPILER})")
endif()
if(CMAKE_CXX_COMPILER_VERSION VERSION_LESS 14)
  message(FATAL_ERROR "FAIRDRAW_FUZZ=ON needs clang >= 14, got ${CMAKE_CXX_COMPILER_VERSION}")
endif()
if(FAIRDRAW_SANITIZE)
  # The fuzz build picks its own sanitizers; mixing in thread or a second set fails to link.
  message(FATAL_ERROR "FAIRDRAW_FUZZ=ON sets ASan+UBSan itself: leave FAIRDRAW_SANITIZE empty")
endif()

# Every object (libraries included) gets coverage feedback and ASan+UBSan, or
# the fuzzer is blind inside the code it is meant to explore. fuzzer-no-link:
# only the fuzz targets link libFuzzer's main (fuzz/CMakeLists.txt); the
# ordinary executables (fairdraw, tests) still link with the sanitizer runtimes.
# -fno-sanitize-recover: a UBSan report must abort, or libFuzzer never sees it.
add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all
                    -fno-omit-frame-pointer)
add_link_options(-fsanitize=address,undefined)
