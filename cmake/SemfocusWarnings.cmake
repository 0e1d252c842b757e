# SPDX-License-Identifier: MIT
# Warnings and the host -march for the project's own targets (tests, examples, benchmarks);
# never applied to semfocus::semfocus, so consumers keep their own flags.
function(semfocus_set_warnings target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wconversion -Wshadow>
    $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<BOOL:${SEMFOCUS_WERROR}>>:-Werror>)
  if(SEMFOCUS_SIMD_MARCH)
    target_compile_options(${target} PRIVATE
      $<$<COMPILE_LANGUAGE:CXX>:-march=${SEMFOCUS_SIMD_MARCH}>)
  endif()
endfunction()
