# SPDX-License-Identifier: Apache-2.0
# Writes the man page and the bash completion from the built binary's own --help texts, so
# both list exactly the commands, subcommands and options that binary has.
#   cmake -DMOEREG=path/to/moereg -DMAN_TEMPLATE=packaging/moereg.1.in -DMAN_OUT=... \
#         -DCOMPLETION_OUT=... -DVERSION=x.y.z [-DDOC_DIR=<the binary's installed docs>] \
#         -P cmake/moereg_help_docs.cmake
# Commands come from `moereg --help` (lines "  NAME  summary"), subcommands from the usage
# lines of `moereg NAME --help` ("moereg moe run ...", "moereg plugins [list | show NAME]"),
# options from boost's option tables ("  -h [ --help ]", "  --layer arg").
foreach(v MOEREG MAN_TEMPLATE MAN_OUT COMPLETION_OUT VERSION)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "moereg_help_docs.cmake: -D${v}=... is required")
  endif()
endforeach()

function(help_of out_var)
  execute_process(COMMAND ${MOEREG} ${ARGN} --help OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
  string(JOIN " " what ${ARGN})
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "`moereg ${what} --help` exited with ${rc}: ${err}")
  endif()
  # The binary names the docs of its install, here the build's configured prefix; the man page
  # serves any prefix (the .deb's is /usr), so it says <prefix> as its own prose does.
  if(DEFINED DOC_DIR)
    string(REPLACE "${DOC_DIR}" "<prefix>/share/doc/moereg" out "${out}")
  endif()
  set(${out_var} "${out}" PARENT_SCOPE)
endfunction()

# Options of one help text: flags, and those that take a value.
function(options_of text flags_var values_var)
  set(flags "")
  set(values "")
  string(REGEX MATCHALL "\n  (-[A-Za-z] \\[ )?--[a-z0-9][a-z0-9-]*( \\])?( arg| \\[arg\\])?" lines "\n${text}")
  foreach(line IN LISTS lines)
    string(REGEX MATCH "--[a-z0-9][a-z0-9-]*" name "${line}")
    if(line MATCHES " \\[?arg\\]?$")
      list(APPEND values ${name})
    else()
      list(APPEND flags ${name})
    endif()
  endforeach()
  set(${flags_var} "${flags}" PARENT_SCOPE)
  set(${values_var} "${values}" PARENT_SCOPE)
endfunction()

# Subcommands named in the usage lines of `moereg CMD --help`.
function(subcommands_of cmd text out_var)
  set(subs "")
  string(REGEX MATCHALL "moereg ${cmd} [^\n]*" usages "${text}")
  foreach(u IN LISTS usages)
    string(REGEX REPLACE "^moereg ${cmd} " "" rest "${u}")
    if(rest MATCHES "^\\[([^]]*)\\]")
      set(rest "${CMAKE_MATCH_1}")
    else()
      string(REGEX REPLACE " .*" "" rest "${rest}")
    endif()
    string(REPLACE "|" ";" alternatives "${rest}")
    foreach(a IN LISTS alternatives)
      string(STRIP "${a}" a)
      string(REGEX REPLACE " .*" "" a "${a}")
      if(a MATCHES "^[a-z][a-z0-9_-]*$")
        list(APPEND subs ${a})
      endif()
    endforeach()
  endforeach()
  list(REMOVE_DUPLICATES subs)
  set(${out_var} "${subs}" PARENT_SCOPE)
endfunction()

# A help text as roff that man prints verbatim.
function(roff_verbatim text out_var)
  string(REPLACE "\\" "\\e" text "${text}")
  string(REGEX REPLACE "(^|\n)([.'])" "\\1\\\\&\\2" text "${text}")
  string(REGEX REPLACE "\n+$" "" text "${text}")
  set(${out_var} ".PP\n.nf\n.RS 2\n${text}\n.RE\n.fi\n" PARENT_SCOPE)
endfunction()

help_of(top)
string(REGEX MATCHALL "\n  [a-z][a-z0-9_-]* +[^\n]*" command_lines "\n${top}")
set(commands "")
set(man_commands "")
set(man_sections "")
set(spec "")
# The top-level options are in its usage line ("[--log-level LEVEL] [--json]") and text.
set(top_flags "")
set(top_values "")
string(REGEX MATCHALL "--[a-z0-9][a-z0-9-]*( [A-Z][A-Z_]*)?" top_options "${top}")
foreach(o IN LISTS top_options)
  string(REGEX MATCH "--[a-z0-9][a-z0-9-]*" name "${o}")
  if(o MATCHES " ")
    list(APPEND top_values ${name})
  else()
    list(APPEND top_flags ${name})
  endif()
endforeach()
list(REMOVE_DUPLICATES top_flags)
list(REMOVE_DUPLICATES top_values)
foreach(line IN LISTS command_lines)
  string(REGEX MATCH "^\n  ([a-z][a-z0-9_-]*) +(.*)$" _ "${line}")
  set(cmd "${CMAKE_MATCH_1}")
  set(summary "${CMAKE_MATCH_2}")
  list(APPEND commands ${cmd})
  help_of(cmd_help ${cmd})
  subcommands_of(${cmd} "${cmd_help}" subs)
  options_of("${cmd_help}" flags values)
  string(REGEX REPLACE "\\\\" "\\\\e" summary_roff "${summary}")
  string(APPEND man_sections ".SS \"moereg ${cmd}\"\n${summary_roff}\n")
  roff_verbatim("${cmd_help}" verbatim)
  string(APPEND man_sections "${verbatim}")
  string(JOIN " " flags_s ${flags})
  string(JOIN " " values_s ${values})
  string(JOIN " " subs_s ${subs})
  string(APPEND spec "    ${cmd}) flags=\"${flags_s}\" values=\"${values_s}\" subs=\"${subs_s}\" ;;\n")
  foreach(sub IN LISTS subs)
    help_of(sub_help ${cmd} ${sub})
    options_of("${sub_help}" flags values)
    string(JOIN " " flags_s ${flags})
    string(JOIN " " values_s ${values})
    string(APPEND spec "    ${cmd}/${sub}) flags=\"${flags_s}\" values=\"${values_s}\" ;;\n")
    if(NOT sub_help STREQUAL cmd_help)  # plugins list/show/check share one text
      string(APPEND man_sections ".SS \"moereg ${cmd} ${sub}\"\n")
      roff_verbatim("${sub_help}" verbatim)
      string(APPEND man_sections "${verbatim}")
    endif()
  endforeach()
endforeach()
list(LENGTH commands n)
if(n LESS 3)
  message(FATAL_ERROR "read ${n} commands from `moereg --help` (expected lines \"  NAME  summary\"):\n${top}")
endif()

# Man page: the template's prose, the top-level help and one section per command.
roff_verbatim("${top}" MOEREG_TOP_HELP)
set(MOEREG_COMMAND_SECTIONS "${man_sections}")
set(MOEREG_VERSION "${VERSION}")
configure_file(${MAN_TEMPLATE} ${MAN_OUT} @ONLY)

# Bash completion.
string(JOIN " " commands_s ${commands})
string(JOIN " " top_flags_s ${top_flags})
string(JOIN " " top_values_s ${top_values})
file(WRITE ${COMPLETION_OUT} "# bash completion for moereg ${VERSION}; generated from its --help texts at build time
# (cmake/moereg_help_docs.cmake). Commands, subcommands and their options; files elsewhere.

# Sets flags, values (options that take an argument) and subs for the command word(s) given.
_moereg_spec() {
  flags=\"\" values=\"\" subs=\"\"
  case \$1 in
    \"\") flags=\"${top_flags_s}\" values=\"${top_values_s}\" subs=\"${commands_s}\" ;;
${spec}  esac
}

_moereg() {
  local cur=\${COMP_WORDS[COMP_CWORD]} prev=\${COMP_WORDS[COMP_CWORD - 1]}
  local flags values subs cmd=\"\" sub=\"\" i w skip=0
  _moereg_spec \"\"
  for ((i = 1; i < COMP_CWORD; i++)); do
    w=\${COMP_WORDS[i]}
    if ((skip)); then
      skip=0
    elif [[ \$w == -* ]]; then
      [[ \" \$values \" == *\" \$w \"* ]] && skip=1  # its value is the next word
    elif [[ -z \$cmd ]]; then
      cmd=\$w
      _moereg_spec \"\$cmd\"
    elif [[ -z \$sub && -n \$subs ]]; then
      sub=\$w
      _moereg_spec \"\$cmd/\$sub\"
    fi
  done
  if [[ \" \$values \" == *\" \$prev \"* ]]; then
    COMPREPLY=(\$(compgen -f -- \"\$cur\"))
  elif [[ \$cur == -* ]]; then
    COMPREPLY=(\$(compgen -W \"\$flags \$values\" -- \"\$cur\"))
  elif [[ -n \$subs ]]; then
    COMPREPLY=(\$(compgen -W \"\$subs\" -- \"\$cur\"))
  else
    COMPREPLY=(\$(compgen -f -- \"\$cur\"))
  fi
}
complete -o filenames -o bashdefault -F _moereg moereg
")
