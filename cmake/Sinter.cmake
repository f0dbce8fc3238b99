# Helpers shared by every part's CMakeLists.txt.

set(SINTER_PC_IN ${CMAKE_CURRENT_LIST_DIR}/sinter.pc.in)

# sinter_library(<name> SOURCES ... [DEPS ...] [PC_REQUIRES "..."] [PC_LIBS "..."] [INSTALL])
# A static library built from SOURCES with include/ as its public include path. INSTALL also
# installs it and a pkg-config file <name>.pc (Requires: PC_REQUIRES, extra Libs: PC_LIBS).
function(sinter_library name)
  cmake_parse_arguments(A "INSTALL" "PC_REQUIRES;PC_LIBS" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${A_SOURCES})
  target_include_directories(${name} PUBLIC
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_link_libraries(${name} PUBLIC ${A_DEPS})
  set_target_properties(${name} PROPERTIES OUTPUT_NAME ${name} POSITION_INDEPENDENT_CODE ON)
  if(A_INSTALL)
    install(TARGETS ${name} ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
    set(PC_NAME ${name})
    set(PC_REQUIRES "${A_PC_REQUIRES}")
    set(PC_LIBS "${A_PC_LIBS}")
    # Relocatable: the prefix is found from the .pc file's own place, so `cmake --install
    # --prefix X` works for any X without reconfiguring.
    file(RELATIVE_PATH PC_PREFIX_REL "/p/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/p")
    configure_file(${SINTER_PC_IN} ${CMAKE_BINARY_DIR}/pkgconfig/${name}.pc @ONLY)
    install(FILES ${CMAKE_BINARY_DIR}/pkgconfig/${name}.pc
            DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
  endif()
endfunction()

# sinter_program(<name> SOURCES ... [LIBS ...] [INSTALL]): an executable in build/bin/.
function(sinter_program name)
  cmake_parse_arguments(A "INSTALL" "" "SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${A_SOURCES})
  target_link_libraries(${name} PRIVATE ${A_LIBS})
  if(A_INSTALL)
    install(TARGETS ${name} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  endif()
endfunction()

# sinter_test(<name> SOURCES ... [LIBS ...] [LABELS ...] [TIMEOUT s] [ARGS ...])
# A test program in build/bin/ registered with ctest. cmocka is linked in; the tier label (unit,
# sim, integration, fuzz) lets `ctest -L unit` pick a tier. The hang guard
# (tests/lib/hangguard.h) is compiled in and armed a little under TIMEOUT through the
# environment, so a test that hangs prints every thread's stack before ctest kills it.
function(sinter_test name)
  cmake_parse_arguments(A "" "TIMEOUT" "SOURCES;LIBS;LABELS;ARGS" ${ARGN})
  add_executable(${name} ${A_SOURCES} ${PROJECT_SOURCE_DIR}/tests/lib/hangguard.c)
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests/lib)
  target_link_libraries(${name} PRIVATE ${A_LIBS} PkgConfig::CMOCKA Threads::Threads)
  add_test(NAME ${name} COMMAND ${name} ${A_ARGS})
  if(NOT A_TIMEOUT)
    set(A_TIMEOUT 300)
  endif()
  # 10 s for gdb to attach and print, or a tenth of a short TIMEOUT.
  math(EXPR guard "${A_TIMEOUT} - 10")
  if(A_TIMEOUT LESS 100)
    math(EXPR guard "${A_TIMEOUT} * 9 / 10")
  endif()
  set_tests_properties(${name} PROPERTIES LABELS "${A_LABELS}" TIMEOUT ${A_TIMEOUT}
    ENVIRONMENT "SINTER_TEST_HANG_GUARD_S=${guard}")
endfunction()
