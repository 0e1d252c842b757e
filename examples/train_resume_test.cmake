# SPDX-License-Identifier: MIT
# ctest example.train_resume: a run interrupted part-way and resumed (train --checkpoint-every,
# --resume) must end with the same bits as the run done in one go -- the saved parameters byte
# for byte, the CSV's every column but the wall time, the summary row -- with dropout on (its
# generator is part of the state). Two cases: SGD with top-k, and Adam (its moments are part of
# the state) with --stop-after ending the run after the resume (converged at epoch 10, stopped at
# 12 of 30, on the Intel Xeon with AVX-512, numerics 3; checked: after the resume, 2 epochs on),
# and --groups 3. The resumed part runs on 2 threads, the rest on 1: the bits do not depend on
# it. Then a state whose fingerprint names another backend (SIMD arch) is refused.
# Usage: cmake -DTRAIN=<train binary> -DOUT=<scratch dir> -P train_resume_test.cmake
file(REMOVE_RECURSE ${OUT})
set(common --blocks 1 --d 16 --d-mlp 16 --train 200 --test 50 --seeds 4 --dropout 0.1 --quiet
           --save)

function(run)
  execute_process(COMMAND ${TRAIN} ${common} ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out
                  ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "train ${ARGN} failed (${rc}): ${out}${err}")
  endif()
  message(STATUS "${out}")
endfunction()

# check(<case> <run name> <epochs> <epochs of the first part> <expected summary row> options...)
function(check case run_name epochs first expected)
  run(${ARGN} --epochs ${epochs} --out ${OUT}/${case}/whole)
  run(${ARGN} --epochs ${first} --checkpoint-every 3 --out ${OUT}/${case}/parts)
  run(${ARGN} --epochs ${epochs} --checkpoint-every 3 --resume --threads 2
      --out ${OUT}/${case}/parts)
  execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files ${OUT}/${case}/whole/${run_name}.params
                          ${OUT}/${case}/parts/${run_name}.params RESULT_VARIABLE differ)
  if(differ)
    message(FATAL_ERROR "${case}: the resumed run's parameters differ from the uninterrupted run's")
  endif()
  foreach(part whole parts)
    file(STRINGS ${OUT}/${case}/${part}/${run_name}.csv lines)
    set(${part} "")
    foreach(line IN LISTS lines)
      string(REGEX REPLACE ",[^,]*$" "" line "${line}")  # drop the seconds column
      list(APPEND ${part} "${line}")
    endforeach()
    file(STRINGS ${OUT}/${case}/${part}/summary.csv rows)
    list(GET rows -1 ${part}_summary)
  endforeach()
  if(NOT whole STREQUAL parts)
    message(FATAL_ERROR "${case}: the CSVs differ:\n${whole}\n---\n${parts}")
  endif()
  if(NOT whole_summary STREQUAL parts_summary OR NOT whole_summary MATCHES "${expected}")
    message(FATAL_ERROR "${case}: summary rows '${whole_summary}' and '${parts_summary}', "
                        "expected '${expected}'")
  endif()
  message(STATUS "${case}: same bits; summary ${whole_summary}")
endfunction()

check(sgd parity_topk_3_seed4 5 2 ",5,0$" --task parity --policy topk:3 --lr 0.5)
check(adam even_pairs_full_seed4 30 8 ",[0-9]+,.*,[0-9]+,1$" --task even_pairs --length 6
      --policy full --optimizer adam --lr 0.01 --stop-after 2)
# --groups 3 (data-parallel steps: each batch of 25 in groups of 9, 8 and 8): the
# first part on 1 thread, the resumed part on 2, the same bits as the whole run on 1.
check(groups parity_full_seed4 5 2 ",5,0$" --task parity --policy full --lr 0.5 --groups 3)
# A state of --groups 3 does not resume as --groups 1 (the gradients' sums differ).
execute_process(COMMAND ${TRAIN} ${common} --task parity --policy full --lr 0.5 --epochs 6
                        --resume --out ${OUT}/groups/parts RESULT_VARIABLE rc OUTPUT_VARIABLE out
                        ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "groups=3")
  message(FATAL_ERROR "groups: a --groups 3 state resumed as --groups 1 (${rc}): ${out}${err}")
endif()
# ... and it converged after the resume (epoch 8) and stopped 2 epochs later (fields 4 and 8 of
# the summary row: convergence epoch, epochs run).
file(STRINGS ${OUT}/adam/whole/summary.csv rows)
list(GET rows -1 row)
string(REPLACE "," ";" fields "${row}")
list(GET fields 3 converged)
list(GET fields 7 ran)
math(EXPR stop "${converged} + 2")
if(converged LESS_EQUAL 8 OR NOT ran EQUAL stop)
  message(FATAL_ERROR "adam: converged at ${converged} and ran ${ran} epochs; expected a "
                      "convergence after epoch 8 and ${stop} epochs run")
endif()

# A state written by another build (here: its fingerprint's backend field changed, as an AVX2
# build's would differ from an AVX-512 build's) is refused, naming both fingerprints.
set(state ${OUT}/arch/parity_full_seed4.state)
run(--task parity --policy full --epochs 1 --checkpoint-every 1 --out ${OUT}/arch)
file(READ ${state} text)
string(REPLACE " backend=" " backend=other-" changed "${text}")
if(changed STREQUAL text)
  message(FATAL_ERROR "arch: the state's fingerprint has no backend field")
endif()
file(WRITE ${state} "${changed}")
execute_process(COMMAND ${TRAIN} ${common} --task parity --policy full --epochs 2 --resume
                        --out ${OUT}/arch RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "other options: .*backend=other-")
  message(FATAL_ERROR "arch: a state of another backend was not refused (${rc}): ${out}${err}")
endif()
message(STATUS "arch: a state of another backend is refused")
