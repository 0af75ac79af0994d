# -DSCENIC_SANITIZE=address,undefined (scripts/sanitize.sh): every target of ours built
# and linked with those sanitizers; LibTorch, MKL, OpenCV stay as shipped (uninstrumented).
# `vptr` is left out: its dynamic-type checks go through RTTI, which can report
# spuriously on classes of shared libraries built without it (not tried here).
set(SCENIC_SANITIZE "" CACHE STRING "gcc -fsanitize= list for a sanitizer build (empty: none)")
if(SCENIC_SANITIZE)
  message(STATUS "Sanitizers: ${SCENIC_SANITIZE}")
  add_compile_options(-fsanitize=${SCENIC_SANITIZE} -fno-omit-frame-pointer -g1)
  if(SCENIC_SANITIZE MATCHES "undefined")
    add_compile_options(-fno-sanitize=vptr -fno-sanitize-recover=undefined)
  endif()
  add_link_options(-fsanitize=${SCENIC_SANITIZE})
  if(SCENIC_SANITIZE MATCHES "address")
    # libstdc++'s bounds checks (operator[] of vector, string, array; front/back of empty
    # containers): they see an index past size() but within capacity, which ASan's
    # container-overflow check would, were it not off (LibTorch's vectors, scripts/sanitize.sh).
    add_compile_definitions(_GLIBCXX_ASSERTIONS)
  endif()
endif()
