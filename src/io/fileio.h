/* The file plumbing moved to core/fileio.h (token shards in src/data use it
 * too, and data sits below io); this name stays for the io readers. */
#include "core/fileio.h"
