# Warnings and sanitizers live in one INTERFACE target linked PRIVATE, so they
# never leak to consumers of the libraries.
add_library(fairdraw_options INTERFACE)
target_compile_options(fairdraw_options INTERFACE -Wall -Wextra -Wpedantic -Wshadow
  -Wnon-virtual-dtor -Wold-style-cast -Wcast-align -Wunused -Woverloaded-virtual
  -Wnull-dereference -Wformat=2)
if(FAIRDRAW_WERROR)
  target_compile_options(fairdraw_options INTERFACE -Werror)
endif()
if(FAIRDRAW_SANITIZE)
  # Sanitizers must apply to every object, including the libraries and tests.
  add_compile_options(-fsanitize=${FAIRDRAW_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${FAIRDRAW_SANITIZE})
  if(FAIRDRAW_SANITIZE MATCHES "thread")
    # GCC 12 warns that TSan does not model atomic_thread_fence, which Asio uses.
    add_compile_options(-Wno-tsan)
  endif()
endif()
