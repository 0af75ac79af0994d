# -DSCENIC_SANITIZE=address,undefined (scripts/sanitize.sh): every target of ours built
# and linked with those sanitizers; LibTorch, MKL, OpenCV stay as shipped (uninstrumented).
# `vptr` is left out: it needs the type info of LibTorch's classes, which their
# uninstrumented code does not provide in the form the check expects.
set(SCENIC_SANITIZE "" CACHE STRING "gcc -fsanitize= list for a sanitizer build (empty: none)")
if(SCENIC_SANITIZE)
  message(STATUS "Sanitizers: ${SCENIC_SANITIZE}")
  add_compile_options(-fsanitize=${SCENIC_SANITIZE} -fno-omit-frame-pointer -g1)
  if(SCENIC_SANITIZE MATCHES "undefined")
    add_compile_options(-fno-sanitize=vptr -fno-sanitize-recover=undefined)
  endif()
  add_link_options(-fsanitize=${SCENIC_SANITIZE})
endif()
