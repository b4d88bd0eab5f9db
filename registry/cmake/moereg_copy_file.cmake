# SPDX-License-Identifier: Apache-2.0
# cmake -DSRC=a -DDST=b -P moereg_copy_file.cmake: copy one file and make it, and its
# directory, non-writable by group and others, whatever the umask, so the registry's trust
# check accepts the build tree as it accepts an install.
get_filename_component(dir ${DST} DIRECTORY)
file(MAKE_DIRECTORY ${dir})
file(COPY_FILE ${SRC} ${DST}.tmp)
file(CHMOD ${DST}.tmp PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
file(RENAME ${DST}.tmp ${DST})
file(CHMOD ${dir} PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
