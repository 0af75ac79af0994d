# OpenCV (decode, resize, warp) from Debian's libopencv-{core,imgcodecs,imgproc}-dev.
# Those packages ship no OpenCVConfig.cmake (that comes with the much larger
# libopencv-dev), so the three libraries are found directly and wrapped in one target.
find_path(SCENIC_OPENCV_INCLUDE opencv2/core.hpp PATH_SUFFIXES opencv4 REQUIRED)
set(_scenic_cv_libs)
foreach(module core imgproc imgcodecs)
  find_library(SCENIC_OPENCV_${module} NAMES opencv_${module} REQUIRED)
  list(APPEND _scenic_cv_libs ${SCENIC_OPENCV_${module}})
endforeach()
add_library(scenic_opencv INTERFACE IMPORTED)
set_target_properties(scenic_opencv PROPERTIES
  INTERFACE_INCLUDE_DIRECTORIES "${SCENIC_OPENCV_INCLUDE}"
  INTERFACE_LINK_LIBRARIES "${_scenic_cv_libs}")
