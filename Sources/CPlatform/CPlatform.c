// The header's inline functions are the whole module; SwiftPM needs one source file.
#include "CPlatform.h"
