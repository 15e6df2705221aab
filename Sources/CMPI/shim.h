// Open MPI's C interface (Debian: libopenmpi-dev, pkg-config `ompi-c`).
//
// `mpi.h` defines the predefined handles (`MPI_COMM_WORLD`, `MPI_FLOAT`, `MPI_SUM`, ...) as
// macros that take the address of internal globals, which Swift cannot import; these inline
// functions hand them to Swift.
#ifndef ACON_CMPI_SHIM_H
#define ACON_CMPI_SHIM_H
#include <mpi.h>

static inline MPI_Comm acon_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype acon_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype acon_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype acon_mpi_byte(void) { return MPI_BYTE; }
static inline MPI_Op acon_mpi_sum(void) { return MPI_SUM; }
static inline MPI_Op acon_mpi_max(void) { return MPI_MAX; }
static inline void *acon_mpi_in_place(void) { return MPI_IN_PLACE; }
static inline MPI_Request acon_mpi_request_null(void) { return MPI_REQUEST_NULL; }
static inline MPI_Errhandler acon_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline MPI_Status *acon_mpi_status_ignore(void) { return MPI_STATUS_IGNORE; }
static inline int acon_mpi_success(void) { return MPI_SUCCESS; }
static inline int acon_mpi_thread_funneled(void) { return MPI_THREAD_FUNNELED; }
static inline int acon_mpi_max_error_string(void) { return MPI_MAX_ERROR_STRING; }

#endif
