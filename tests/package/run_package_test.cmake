# SPDX-License-Identifier: MIT
# cmake -P script: install BUILD_TREE into WORK_DIR/prefix, build SOURCE_DIR against it, run it.
file(REMOVE_RECURSE "${WORK_DIR}")
function(run)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGV}")
  endif()
endfunction()
run(${CMAKE_COMMAND} --install "${BUILD_TREE}" --prefix "${WORK_DIR}/prefix")
set(extra "")
if(HIDE_XSIMD)
  # As on a machine without libxsimd-dev: the consumer must still find semfocus::semfocus.
  set(extra -Dxsimd_DIR=xsimd_DIR-NOTFOUND -DCMAKE_DISABLE_FIND_PACKAGE_xsimd=ON
            -DSEMFOCUS_EXPECT_NO_SIMD=ON)
endif()
run(${CMAKE_COMMAND} -S "${SOURCE_DIR}" -B "${WORK_DIR}/build" -G "${GENERATOR}"
    -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DCMAKE_BUILD_TYPE=Release ${extra})
run(${CMAKE_COMMAND} --build "${WORK_DIR}/build")
run("${WORK_DIR}/build/consumer")
if(EXISTS "${WORK_DIR}/build/consumer_simd")
  run("${WORK_DIR}/build/consumer_simd")
endif()
if(EXISTS "${WORK_DIR}/build/consumer_bounds")
  run("${WORK_DIR}/build/consumer_bounds")
endif()
