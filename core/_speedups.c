/* core._speedups: the one-handler hot path of EventBus.publish_async, in C.
 *
 * Optional: core/_native.py loads it, and the bus falls back to the equivalent Python
 * path when it is missing (no compiler at install time) or PUBSUB_PURE_PYTHON is set.
 * Both paths keep the same promises: the handled event is in the dispatch context
 * variable while the handler runs, the publish and the handler's duration are
 * recorded, the publish counts as in flight while it is suspended, and the result is a
 * PublishResult. A handler's failure is handed to Python (EventBus._fast_failed),
 * which builds the outcome and the dead letter.
 *
 * Publisher(routes, var, result_type, active, failed, general) is called as
 * publisher(event, raise_on_error) and returns a Call: an object that behaves like the
 * coroutine of an async def. It does nothing until it is awaited (or sent None by a
 * task); then, like the Python path, it looks up the event's route. For a single plain
 * handler (async, or sync with inline=True) it runs the handler in the awaiting task:
 * a handler that finishes without suspending completes the publish in one step, with
 * no frame of its own. One that suspends has send/throw/close forwarded to it until it
 * finishes, and is reported in flight meanwhile (active(+1) / active(-1)), so drain
 * and aclose see it. Any other case (several handlers, a policy, a route not cached
 * yet, a bus that is no longer plain) runs general(event, raise_on_error) instead.
 *
 * TypeCount and Durations are the built-in metrics recorders (core.metrics), updated in
 * place by the Call; any other recorder is called through its methods.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#if PY_VERSION_HEX < 0x030B0000
#error "core._speedups needs CPython 3.11 or newer"
#endif

static PyObject *str_fast;     /* "fast": the Route attribute Publisher reads */
static PyObject *str_throw;
static PyObject *str_close;
static PyObject *str_published;
static PyObject *str_succeeded;
static PyObject *int_plus_one;  /* active(+1) */
static PyObject *int_minus_one; /* active(-1) */

static double
perf_now(void)
{
#if PY_VERSION_HEX >= 0x030D0000
    PyTime_t t;
    (void)PyTime_PerfCounterRaw(&t);
    return PyTime_AsSecondsDouble(t);
#else
    /* The clock of time.perf_counter(): t0 is handed to Python on failure. */
    return _PyTime_AsSecondsDouble(_PyTime_GetPerfCounter());
#endif
}

/* Take the raised exception (normalized, with its traceback attached). */
static PyObject *
fetch_exception(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (type == NULL) {
        return NULL;
    }
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL) {
        PyException_SetTraceback(value, tb);
        Py_DECREF(tb);
    }
    Py_DECREF(type);
    return value;
#endif
}

static void
restore_exception(PyObject *exc)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    PyObject *type = Py_NewRef((PyObject *)Py_TYPE(exc));
    PyObject *tb = PyException_GetTraceback(exc);
    PyErr_Restore(type, exc, tb);
#endif
}

/* Raise StopIteration(value): how send() and throw() report a return. */
static void
set_stop_iteration(PyObject *value)
{
    PyObject *stop = PyObject_CallOneArg(PyExc_StopIteration, value);
    if (stop != NULL) {
        PyErr_SetObject(PyExc_StopIteration, stop);
        Py_DECREF(stop);
    }
}

/* After a failed call of throw(): PYGEN_RETURN with the StopIteration's value when the
 * iterator returned, otherwise PYGEN_ERROR with the exception still set. */
static PySendResult
result_of_throw(PyObject *yielded, PyObject **presult)
{
    if (yielded != NULL) {
        *presult = yielded;
        return PYGEN_NEXT;
    }
    if (PyErr_ExceptionMatches(PyExc_StopIteration)) {
        PyObject *exc = fetch_exception();
        PyObject *value = ((PyStopIterationObject *)exc)->value;
        *presult = Py_NewRef(value != NULL ? value : Py_None);
        Py_DECREF(exc);
        return PYGEN_RETURN;
    }
    *presult = NULL;
    return PYGEN_ERROR;
}

/* ---- the built-in metrics recorders (core.metrics) --------------------------------- */

#define RING 1024 /* recent durations kept per (handler, event type): core.metrics._RING */

typedef struct {
    PyObject_HEAD
    long long count;
} TypeCount;

static PyObject *
TypeCount_published(TypeCount *self, PyObject *Py_UNUSED(ignored))
{
    self->count++;
    Py_RETURN_NONE;
}

static PyMethodDef TypeCount_methods[] = {
    {"published", (PyCFunction)TypeCount_published, METH_NOARGS, "Count one publish."},
    {NULL},
};

static PyMemberDef TypeCount_members[] = {
    {"count", T_LONGLONG, offsetof(TypeCount, count), 0, "events published"},
    {NULL},
};

static PyTypeObject TypeCount_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "core._speedups.TypeCount",
    .tp_basicsize = sizeof(TypeCount),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Publishes of one event type.",
    .tp_new = PyType_GenericNew,
    .tp_methods = TypeCount_methods,
    .tp_members = TypeCount_members,
};

typedef struct {
    PyObject_HEAD
    long long n; /* outcomes recorded, each with its duration */
    long long failed_n, timed_out, rejected, retries, dead_letters;
    double total, max;
    double ring[RING]; /* the last RING durations; only min(n, RING) are real */
} Durations;

static inline void
durations_add(Durations *self, double duration)
{
    self->ring[self->n & (RING - 1)] = duration;
    self->n++;
    self->total += duration;
    if (duration > self->max) {
        self->max = duration;
    }
}

static PyObject *
Durations_succeeded(Durations *self, PyObject *arg)
{
    double d = PyFloat_AsDouble(arg);
    if (d == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    durations_add(self, d);
    Py_RETURN_NONE;
}

static PyObject *
Durations_get_samples(Durations *self, void *Py_UNUSED(closure))
{
    Py_ssize_t k = self->n < RING ? (Py_ssize_t)self->n : RING;
    PyObject *out = PyList_New(k);
    if (out == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < k; i++) {
        PyObject *f = PyFloat_FromDouble(self->ring[i]);
        if (f == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, f);
    }
    return out;
}

static PyMethodDef Durations_methods[] = {
    {"succeeded", (PyCFunction)Durations_succeeded, METH_O, "Record one ok outcome."},
    {NULL},
};

static PyMemberDef Durations_members[] = {
    {"n", T_LONGLONG, offsetof(Durations, n), 0, "outcomes recorded"},
    {"failed_n", T_LONGLONG, offsetof(Durations, failed_n), 0, NULL},
    {"timed_out", T_LONGLONG, offsetof(Durations, timed_out), 0, NULL},
    {"rejected", T_LONGLONG, offsetof(Durations, rejected), 0, NULL},
    {"retries", T_LONGLONG, offsetof(Durations, retries), 0, NULL},
    {"dead_letters", T_LONGLONG, offsetof(Durations, dead_letters), 0, NULL},
    {"total", T_DOUBLE, offsetof(Durations, total), 0, "sum of durations"},
    {"max", T_DOUBLE, offsetof(Durations, max), 0, "longest duration"},
    {NULL},
};

static PyGetSetDef Durations_getset[] = {
    {"samples", (getter)Durations_get_samples, NULL, "the recent durations kept", NULL},
    {NULL},
};

static PyTypeObject Durations_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "core._speedups.Durations",
    .tp_basicsize = sizeof(Durations),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Counts and durations of one handler on one event type.",
    .tp_new = PyType_GenericNew,
    .tp_methods = Durations_methods,
    .tp_members = Durations_members,
    .tp_getset = Durations_getset,
};

/* ---- Publisher -------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *routes;        /* dict: concrete event type -> Route */
    PyObject *var;           /* the dispatch ContextVar */
    PyTypeObject *result_type;
    PyObject *active;        /* bus._fast_active(delta) */
    PyObject *failed;        /* bus._fast_failed(route, event, exc, t0, raise_on_error) */
    PyObject *general;       /* bus._publish(event, raise_on_error): every other case */
    char enabled;            /* the bus is plain (no store, middleware, hooks; open) */
    PyObject *empty;         /* () */
    Py_ssize_t off_event, off_names, off_durations, off_outcomes;
    long long completed;     /* publishes this path completed with the handler ok */
    long long executing;     /* Calls running their handler, not (yet) in bus._active */
} Publisher;

/* RUNNING: the handler; DELEGATE: the failure coroutine (still in flight, the context
 * variable still set); GENERAL: the general path's coroutine, forwarded as is. */
typedef enum { ST_INIT, ST_RUNNING, ST_DELEGATE, ST_GENERAL, ST_DONE } CallState;

typedef struct {
    PyObject_HEAD
    Publisher *pub;
    PyObject *event;
    PyObject *route;
    PyObject *fast;          /* route.fast: (fn, type recorder, handler recorder, names,
                                is_async) */
    PyObject *raise_on_error;
    PyObject *token;         /* the context variable's token while the handler runs */
    PyObject *inner;         /* the handler's iterator, then the failure coroutine */
    PyObject *failure;       /* the handler's exception, "being handled" in ST_DELEGATE */
    double t0;
    CallState state;
    int suspended;           /* counted in bus._active (it suspended) */
    int executing;           /* counted in pub->executing (it has not suspended) */
    int running;             /* inside send/throw/close: re-entry is refused */
    PyObject *weakrefs;      /* as a coroutine, a Call can be weakly referenced */
} Call;

static PyTypeObject Call_Type;
static PySendResult Call_am_send(Call *self, PyObject *arg, PyObject **presult);

static Py_ssize_t
slot_offset(PyTypeObject *type, const char *name)
{
    PyObject *descr = PyObject_GetAttrString((PyObject *)type, name);
    if (descr == NULL) {
        return -1;
    }
    Py_ssize_t offset = -1;
    if (Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
        PyMemberDef *def = ((PyMemberDescrObject *)descr)->d_member;
        if (def->type == T_OBJECT_EX && !(def->flags & READONLY)) {
            offset = def->offset;
        }
    }
    Py_DECREF(descr);
    if (offset < 0) {
        PyErr_Format(PyExc_TypeError, "%s.%s is not a writable __slots__ member",
                     type->tp_name, name);
    }
    return offset;
}

static void
set_slot(PyObject *obj, Py_ssize_t offset, PyObject *value)
{
    PyObject **addr = (PyObject **)((char *)obj + offset);
    PyObject *old = *addr;
    *addr = Py_NewRef(value);
    Py_XDECREF(old);
}

static PyObject *
Publisher_call(PyObject *self_obj, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 2 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0)) {
        PyErr_SetString(PyExc_TypeError, "Publisher(event, raise_on_error) takes 2 arguments");
        return NULL;
    }
    /* Everything else is decided when the publish starts, as in a coroutine. */
    Call *call = PyObject_GC_New(Call, &Call_Type);
    if (call == NULL) {
        return NULL;
    }
    call->pub = (Publisher *)Py_NewRef(self_obj);
    call->event = Py_NewRef(args[0]);
    call->route = NULL;
    call->fast = NULL;
    call->raise_on_error = Py_NewRef(args[1]);
    call->token = NULL;
    call->inner = NULL;
    call->failure = NULL;
    call->t0 = 0.0;
    call->state = ST_INIT;
    call->suspended = 0;
    call->executing = 0;
    call->running = 0;
    call->weakrefs = NULL;
    PyObject_GC_Track(call);
    return (PyObject *)call;
}

static PyObject *
Publisher_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"routes", "var", "result_type", "active", "failed", "general",
                             NULL};
    PyObject *routes, *var, *result_type, *active, *failed, *general;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!OO!OOO:Publisher", kwlist, &PyDict_Type,
                                     &routes, &var, &PyType_Type, &result_type, &active,
                                     &failed, &general)) {
        return NULL;
    }
    if (!PyContextVar_CheckExact(var)) {
        PyErr_SetString(PyExc_TypeError, "var must be a contextvars.ContextVar");
        return NULL;
    }
    PyTypeObject *rt = (PyTypeObject *)result_type;
    Py_ssize_t off_event = slot_offset(rt, "event");
    Py_ssize_t off_names = off_event < 0 ? -1 : slot_offset(rt, "_names");
    Py_ssize_t off_durations = off_names < 0 ? -1 : slot_offset(rt, "_durations");
    Py_ssize_t off_outcomes = off_durations < 0 ? -1 : slot_offset(rt, "_outcomes");
    if (off_outcomes < 0) {
        return NULL;
    }
    Publisher *self = (Publisher *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->vectorcall = Publisher_call;
    self->routes = Py_NewRef(routes);
    self->var = Py_NewRef(var);
    self->result_type = (PyTypeObject *)Py_NewRef(result_type);
    self->active = Py_NewRef(active);
    self->failed = Py_NewRef(failed);
    self->general = Py_NewRef(general);
    self->enabled = 1;
    self->empty = PyTuple_New(0);
    if (self->empty == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->off_event = off_event;
    self->off_names = off_names;
    self->off_durations = off_durations;
    self->off_outcomes = off_outcomes;
    self->completed = 0;
    self->executing = 0;
    return (PyObject *)self;
}

static int
Publisher_traverse(Publisher *self, visitproc visit, void *arg)
{
    Py_VISIT(self->routes);
    Py_VISIT(self->var);
    Py_VISIT(self->result_type);
    Py_VISIT(self->active);
    Py_VISIT(self->failed);
    Py_VISIT(self->general);
    return 0;
}

static int
Publisher_clear(Publisher *self)
{
    Py_CLEAR(self->routes);
    Py_CLEAR(self->var);
    Py_CLEAR(self->result_type);
    Py_CLEAR(self->active);
    Py_CLEAR(self->failed);
    Py_CLEAR(self->general);
    Py_CLEAR(self->empty);
    return 0;
}

static void
Publisher_dealloc(Publisher *self)
{
    PyObject_GC_UnTrack(self);
    Publisher_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef Publisher_members[] = {
    {"completed", T_LONGLONG, offsetof(Publisher, completed), READONLY,
     "publishes completed on this path with their handler ok"},
    {"executing", T_LONGLONG, offsetof(Publisher, executing), READONLY,
     "publishes running their handler that have not suspended (in flight too)"},
    {"enabled", T_BOOL, offsetof(Publisher, enabled), 0,
     "False sends publishes that start now to the general path"},
    {NULL},
};

static PyTypeObject Publisher_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "core._speedups.Publisher",
    .tp_basicsize = sizeof(Publisher),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "The one-handler publish path of an EventBus.",
    .tp_new = Publisher_new,
    .tp_dealloc = (destructor)Publisher_dealloc,
    .tp_traverse = (traverseproc)Publisher_traverse,
    .tp_clear = (inquiry)Publisher_clear,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(Publisher, vectorcall),
    .tp_members = Publisher_members,
};

/* ---- Call ------------------------------------------------------------------------- */

/* Finished (or cleared): done, and every reference dropped. */
static void
Call_done(Call *self)
{
    self->state = ST_DONE;
    Py_CLEAR(self->event);
    Py_CLEAR(self->route);
    Py_CLEAR(self->fast);
    Py_CLEAR(self->raise_on_error);
    Py_CLEAR(self->token);
    Py_CLEAR(self->inner);
    Py_CLEAR(self->failure);
}

/* Done, with the exception set: the error result of a send. */
static PySendResult
Call_error(Call *self, PyObject **presult)
{
    Call_done(self);
    *presult = NULL;
    return PYGEN_ERROR;
}

/* What a forwarded send of an inner coroutine gave; done unless it yielded. */
static PySendResult
Call_forwarded(Call *self, PySendResult r)
{
    if (r != PYGEN_NEXT) {
        Call_done(self);
    }
    return r;
}

/* The handler ran (or was abandoned): reset the context variable, and leave the
 * in-flight count if it had suspended. Keeps a pending exception. */
static int
Call_leave(Call *self)
{
    int rc = 0;
    PyObject *pending = PyErr_Occurred() ? fetch_exception() : NULL;
    PyObject *err = NULL;  /* the first error of our own */
    if (self->token != NULL) {
        if (PyContextVar_Reset(self->pub->var, self->token) < 0) {
            if (PyErr_ExceptionMatches(PyExc_ValueError)) {
                PyErr_Clear();  /* another context: as _reset_dispatch, drop the reset */
            }
            else {
                rc = -1;
                err = fetch_exception();
            }
        }
        Py_CLEAR(self->token);
    }
    if (self->executing) {
        self->executing = 0;
        self->pub->executing--;
    }
    if (self->suspended) {
        self->suspended = 0;
        PyObject *r = PyObject_CallOneArg(self->pub->active, int_minus_one);
        if (r == NULL) {
            rc = -1;
            if (err == NULL) {
                err = fetch_exception();
            }
            else {
                PyErr_Clear();
            }
        }
        Py_XDECREF(r);
    }
    if (pending != NULL) {
        Py_XDECREF(err);  /* the handler's own exception wins */
        restore_exception(pending);
    }
    else if (err != NULL) {
        restore_exception(err);
    }
    return rc;
}

static PySendResult
Call_succeeded(Call *self, double duration, PyObject **presult)
{
    Publisher *pub = self->pub;
    PyObject *d = PyFloat_FromDouble(duration);
    if (d == NULL) {
        goto error;
    }
    PyObject *rec = PyTuple_GET_ITEM(self->fast, 2);
    if (PyObject_TypeCheck(rec, &Durations_Type)) {
        durations_add((Durations *)rec, duration);
    }
    else {
        PyObject *r = PyObject_CallMethodOneArg(rec, str_succeeded, d);
        if (r == NULL) {
            Py_DECREF(d);
            goto error;
        }
        Py_DECREF(r);
    }
    PyObject *durations = PyTuple_New(1);
    if (durations == NULL) {
        Py_DECREF(d);
        goto error;
    }
    PyTuple_SET_ITEM(durations, 0, d);
    PyObject *result = pub->result_type->tp_alloc(pub->result_type, 0);
    if (result == NULL) {
        Py_DECREF(durations);
        goto error;
    }
    set_slot(result, pub->off_event, self->event);
    set_slot(result, pub->off_names, PyTuple_GET_ITEM(self->fast, 3));
    set_slot(result, pub->off_durations, durations);
    set_slot(result, pub->off_outcomes, pub->empty);
    Py_DECREF(durations);
    pub->completed++;
    Call_done(self);
    *presult = result;
    return PYGEN_RETURN;
error:
    return Call_error(self, presult);
}

static int Call_count_in_flight(Call *self);

/* Run fn on the delegate with the handler's exception as the one being handled, as
 * in the Python path's `except Exception as exc:` block (implicit chaining, exc_info). */
static PyObject *
handling_begin(Call *self)
{
    PyObject *saved = PyErr_GetHandledException();
    PyErr_SetHandledException(self->failure);
    return saved;
}

static void
handling_end(PyObject *saved)
{
    PyErr_SetHandledException(saved);
    Py_XDECREF(saved);
}

/* What the failure coroutine did: like the Python path's `finally`, the context
 * variable is reset and the in-flight count left only when it is finished. */
static PySendResult
Call_delegate_step(Call *self, PySendResult r, PyObject **presult)
{
    if (r == PYGEN_NEXT) {
        if (Call_count_in_flight(self) < 0) {
            Py_CLEAR(*presult);
            return PYGEN_ERROR;
        }
        return r;
    }
    if (Call_leave(self) < 0 && r == PYGEN_RETURN) {
        Py_CLEAR(*presult);
        r = PYGEN_ERROR;
    }
    Call_done(self);
    return r;
}

/* Hand the handler's exception to the bus (EventBus._fast_failed) and run the
 * coroutine it returns in place of the rest of this publish. */
static PySendResult
Call_failed(Call *self, PyObject *exc, PyObject **presult)
{
    PyObject *t0 = PyFloat_FromDouble(self->t0);
    PyObject *delegate = NULL;
    if (t0 != NULL) {
        PyObject *args[5] = {self->route, self->event, exc, t0, self->raise_on_error};
        delegate = PyObject_Vectorcall(self->pub->failed, args, 5, NULL);
        Py_DECREF(t0);
    }
    if (delegate == NULL) {
        Py_DECREF(exc);
        Call_leave(self);
        return Call_error(self, presult);
    }
    Py_CLEAR(self->inner);
    self->inner = delegate;
    self->failure = exc;
    self->state = ST_DELEGATE;
    PyObject *saved = handling_begin(self);
    PySendResult r = PyIter_Send(delegate, Py_None, presult);
    handling_end(saved);
    return Call_delegate_step(self, r, presult);
}

/* First suspension: count the publish in flight. On failure, abandon the inner
 * iterator and finish with the error. */
static int
Call_count_in_flight(Call *self)
{
    if (self->suspended) {
        return 0;
    }
    PyObject *res = PyObject_CallOneArg(self->pub->active, int_plus_one);
    if (res != NULL) {
        Py_DECREF(res);
        self->suspended = 1;
        if (self->executing) {
            self->executing = 0;
            self->pub->executing--;
        }
        return 0;
    }
    PyObject *inner = self->inner;
    self->inner = NULL;
    PyObject *exc = fetch_exception();
    PyObject *c = PyObject_CallMethodNoArgs(inner, str_close);
    Py_XDECREF(c);
    PyErr_Clear();
    Py_DECREF(inner);
    restore_exception(exc);
    Call_leave(self);
    Call_done(self);
    return -1;
}

/* What the handler's iterator did on a send or a throw. */
static PySendResult
Call_step(Call *self, PySendResult r, PyObject *value, PyObject **presult)
{
    if (r == PYGEN_NEXT) {
        if (Call_count_in_flight(self) < 0) {
            Py_DECREF(value);
            *presult = NULL;
            return PYGEN_ERROR;
        }
        *presult = value;
        return PYGEN_NEXT;
    }
    double duration = perf_now() - self->t0;
    Py_CLEAR(self->inner);
    if (r == PYGEN_RETURN) {
        Py_DECREF(value);
        if (Call_leave(self) < 0) {
            return Call_error(self, presult);
        }
        return Call_succeeded(self, duration, presult);
    }
    /* The handler raised. An Exception is a handler failure; anything else
     * (CancelledError, KeyboardInterrupt, SystemExit) goes to the awaiting task. */
    if (!PyErr_ExceptionMatches(PyExc_Exception)) {
        Call_leave(self);
        return Call_error(self, presult);
    }
    return Call_failed(self, fetch_exception(), presult);
}

/* The iterator that `await obj` drives (as the interpreter finds it). Steals obj. */
static PyObject *
awaitable_iter(PyObject *obj)
{
    if (PyCoro_CheckExact(obj)) {
        if (Py_REFCNT(obj) == 1) {
            return obj;  /* made by this call (an async def): nobody else awaits it */
        }
        PyObject *yf = PyObject_GetAttrString(obj, "cr_await");
        if (yf == NULL || yf != Py_None) {
            if (yf != NULL) {
                PyErr_SetString(PyExc_RuntimeError, "coroutine is being awaited already");
            }
            Py_XDECREF(yf);
            Py_DECREF(obj);
            return NULL;
        }
        Py_DECREF(yf);
        return obj;
    }
    if (PyGen_CheckExact(obj)) {
        /* A generator-based coroutine (types.coroutine) is awaitable as it is. */
        PyObject *code = PyObject_GetAttrString(obj, "gi_code");
        PyObject *flags = code == NULL ? NULL : PyObject_GetAttrString(code, "co_flags");
        Py_XDECREF(code);
        long f = flags == NULL ? -1 : PyLong_AsLong(flags);
        Py_XDECREF(flags);
        if (f == -1 && PyErr_Occurred()) {
            Py_DECREF(obj);
            return NULL;
        }
        if (f & CO_ITERABLE_COROUTINE) {
            return obj;
        }
    }
    PyAsyncMethods *am = Py_TYPE(obj)->tp_as_async;
    if (am == NULL || am->am_await == NULL) {
        PyErr_Format(PyExc_TypeError, "object %.100s can't be used in 'await' expression",
                     Py_TYPE(obj)->tp_name);
        Py_DECREF(obj);
        return NULL;
    }
    PyObject *it = am->am_await(obj);
    Py_DECREF(obj);
    if (it != NULL && (PyCoro_CheckExact(it) || !PyIter_Check(it))) {
        PyErr_Format(PyExc_TypeError, "__await__() returned %s of type '%.100s'",
                     PyCoro_CheckExact(it) ? "a coroutine" : "a non-iterator",
                     Py_TYPE(it)->tp_name);
        Py_CLEAR(it);
    }
    return it;
}

/* Not a single plain handler (or the bus is no longer plain): run the general path's
 * coroutine in place of this one. */
static PySendResult
Call_general(Call *self, PyObject **presult)
{
    PyObject *args[2] = {self->event, self->raise_on_error};
    PyObject *coro = PyObject_Vectorcall(self->pub->general, args, 2, NULL);
    if (coro == NULL) {
        return Call_error(self, presult);
    }
    self->inner = coro;
    self->state = ST_GENERAL;
    PySendResult r = PyIter_Send(coro, Py_None, presult);
    return Call_forwarded(self, r);
}

static PySendResult
Call_start(Call *self, PyObject **presult)
{
    if (!self->pub->enabled) {
        return Call_general(self, presult);
    }
    PyObject *route =
        PyDict_GetItemWithError(self->pub->routes, (PyObject *)Py_TYPE(self->event));
    if (route == NULL) {
        if (PyErr_Occurred()) {
            goto error;
        }
        return Call_general(self, presult);  /* not cached yet: the general path builds it */
    }
    self->route = Py_NewRef(route);  /* borrowed until here: nothing ran in between */
    PyObject *fast = PyObject_GetAttr(route, str_fast);
    if (fast == NULL) {
        goto error;
    }
    if (!PyTuple_CheckExact(fast) || PyTuple_GET_SIZE(fast) != 5) {
        Py_DECREF(fast);
        return Call_general(self, presult);
    }
    self->fast = fast;
    PyObject *counter = PyTuple_GET_ITEM(fast, 1);
    if (PyObject_TypeCheck(counter, &TypeCount_Type)) {
        ((TypeCount *)counter)->count++;
    }
    else {
        PyObject *r = PyObject_CallMethodNoArgs(counter, str_published);
        if (r == NULL) {
            goto error;
        }
        Py_DECREF(r);
    }
    self->token = PyContextVar_Set(self->pub->var, self->event);
    if (self->token == NULL) {
        goto error;
    }
    self->state = ST_RUNNING;
    self->executing = 1;
    self->pub->executing++;
    self->t0 = perf_now();
    PyObject *coro = PyObject_CallOneArg(PyTuple_GET_ITEM(fast, 0), self->event);
    if (PyTuple_GET_ITEM(fast, 4) != Py_True) {
        /* An inline sync handler: it ran; what it returned is ignored. */
        if (coro == NULL) {
            return Call_step(self, PYGEN_ERROR, NULL, presult);
        }
        Py_DECREF(coro);
        return Call_step(self, PYGEN_RETURN, Py_NewRef(Py_None), presult);
    }
    if (coro != NULL) {
        coro = awaitable_iter(coro);
    }
    if (coro == NULL) {
        return Call_step(self, PYGEN_ERROR, NULL, presult);
    }
    self->inner = coro;
    PyObject *value;
    PySendResult r = PyIter_Send(coro, Py_None, &value);
    return Call_step(self, r, value, presult);
error:
    return Call_error(self, presult);
}

static PySendResult
Call_am_send_impl(Call *self, PyObject *arg, PyObject **presult)
{
    PyObject *value;
    PySendResult r;
    switch (self->state) {
    case ST_INIT:
        if (arg != Py_None) {
            PyErr_SetString(PyExc_TypeError,
                            "can't send non-None value to a just-started coroutine");
            *presult = NULL;
            return PYGEN_ERROR;
        }
        return Call_start(self, presult);
    case ST_RUNNING:
        r = PyIter_Send(self->inner, arg, &value);
        return Call_step(self, r, value, presult);
    case ST_DELEGATE: {
        PyObject *saved = handling_begin(self);
        r = PyIter_Send(self->inner, arg, presult);
        handling_end(saved);
        return Call_delegate_step(self, r, presult);
    }
    case ST_GENERAL:
        r = PyIter_Send(self->inner, arg, presult);
        return Call_forwarded(self, r);
    default:
        PyErr_SetString(PyExc_RuntimeError, "cannot reuse already awaited coroutine");
        *presult = NULL;
        return PYGEN_ERROR;
    }
}

/* send()/__next__ in the method protocol: a return is StopIteration(value). */
static PyObject *
Call_send_method(Call *self, PyObject *arg)
{
    PyObject *value;
    PySendResult r = Call_am_send(self, arg, &value);
    if (r == PYGEN_RETURN) {
        set_stop_iteration(value);
        Py_DECREF(value);
        return NULL;
    }
    return value;  /* the yielded value, or NULL with the exception set */
}

static PyObject *
Call_iternext(Call *self)
{
    PyObject *value;
    PySendResult r = Call_am_send(self, Py_None, &value);
    if (r == PYGEN_RETURN) {
        if (value != Py_None) {
            set_stop_iteration(value);
        }
        Py_DECREF(value);
        return NULL;
    }
    return value;
}

/* Raise what throw(typ[, val[, tb]]) was given, as a generator that is not running. */
static PyObject *
raise_thrown(PyObject *args)
{
    PyObject *typ, *val = NULL, *tb = NULL;
    if (!PyArg_UnpackTuple(args, "throw", 1, 3, &typ, &val, &tb)) {
        return NULL;
    }
    if (PyExceptionInstance_Check(typ)) {
        PyErr_SetObject((PyObject *)Py_TYPE(typ), typ);
        return NULL;
    }
    if (PyExceptionClass_Check(typ)) {
        PyErr_SetObject(typ, val == Py_None ? NULL : val);
        return NULL;
    }
    PyErr_SetString(PyExc_TypeError,
                    "exceptions must be classes or instances deriving from BaseException");
    return NULL;
}

static PyObject *
Call_throw_impl(Call *self, PyObject *args)
{
    PyObject *value, *meth, *yielded;
    PySendResult r;
    switch (self->state) {
    case ST_RUNNING:
    case ST_DELEGATE:
    case ST_GENERAL:
        meth = PyObject_GetAttr(self->inner, str_throw);
        if (meth == NULL) {
            /* An iterator without throw(): raise here, as a generator would. */
            if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
                PyErr_Clear();
                raise_thrown(args);
            }
            yielded = NULL;
        }
        else {
            PyObject *saved = self->state == ST_DELEGATE ? handling_begin(self) : NULL;
            yielded = PyObject_Call(meth, args, NULL);
            if (self->state == ST_DELEGATE) {
                handling_end(saved);
            }
            Py_DECREF(meth);
        }
        r = result_of_throw(yielded, &value);
        if (self->state == ST_RUNNING) {
            r = Call_step(self, r, value, &value);
        }
        else if (self->state == ST_DELEGATE) {
            r = Call_delegate_step(self, r, &value);
        }
        else {
            Call_forwarded(self, r);
        }
        break;
    default:
        /* Not started, or finished: the exception comes straight back. */
        Call_done(self);
        return raise_thrown(args);
    }
    if (r == PYGEN_RETURN) {
        set_stop_iteration(value);
        Py_DECREF(value);
        return NULL;
    }
    return value;
}

static PyObject *
Call_close_impl(Call *self)
{
    int failed = 0;
    if (self->inner != NULL) {
        /* An iterator without close() has nothing to close (as for `yield from`). */
        PyObject *meth = PyObject_GetAttr(self->inner, str_close);
        PyObject *r = meth == NULL ? NULL : PyObject_CallNoArgs(meth);
        Py_XDECREF(meth);
        if (r == NULL) {
            if (meth == NULL && PyErr_ExceptionMatches(PyExc_AttributeError)) {
                PyErr_Clear();
            }
            else {
                failed = 1;
            }
        }
        Py_XDECREF(r);
    }
    if (failed && self->state == ST_RUNNING && PyErr_ExceptionMatches(PyExc_Exception)) {
        /* The handler's cleanup raised: a handler failure, as on the Python path. */
        PyObject *value;
        PySendResult r = Call_failed(self, fetch_exception(), &value);
        if (r == PYGEN_RETURN) {
            Py_DECREF(value);
            Py_RETURN_NONE;
        }
        if (r == PYGEN_NEXT) {
            /* The failure path suspended while closing: stop it, as CPython does. */
            Py_DECREF(value);
            PyObject *closed = Call_close_impl(self);
            Py_XDECREF(closed);
            PyErr_Clear();
            PyErr_SetString(PyExc_RuntimeError, "coroutine ignored GeneratorExit");
        }
        return NULL;
    }
    if (self->state == ST_RUNNING || self->state == ST_DELEGATE) {
        /* Abandoned while the handler was suspended: still reset the context
         * variable and leave the in-flight count. Closed from another context (by the
         * garbage collector), the reset cannot apply and is dropped. */
        if (Call_leave(self) < 0 && !failed) {
            PyErr_Clear();
        }
    }
    Call_done(self);
    if (failed) {
        return NULL;
    }
    Py_RETURN_NONE;
}


static int
Call_refuse_reentry(Call *self)
{
    if (self->running) {
        PyErr_SetString(PyExc_ValueError, "coroutine already executing");
        return 1;
    }
    return 0;
}

static PySendResult
Call_am_send(Call *self, PyObject *arg, PyObject **presult)
{
    if (Call_refuse_reentry(self)) {
        *presult = NULL;
        return PYGEN_ERROR;
    }
    self->running = 1;
    PySendResult r = Call_am_send_impl(self, arg, presult);
    self->running = 0;
    return r;
}

static PyObject *
Call_throw(Call *self, PyObject *args)
{
    PyObject *typ, *val = NULL, *tb = NULL;
    if (!PyArg_UnpackTuple(args, "throw", 1, 3, &typ, &val, &tb)) {
        return NULL;  /* as a coroutine: a bad call changes nothing */
    }
    if (Call_refuse_reentry(self)) {
        return NULL;
    }
    self->running = 1;
    PyObject *r = Call_throw_impl(self, args);
    self->running = 0;
    return r;
}

static PyObject *
Call_close(Call *self, PyObject *Py_UNUSED(ignored))
{
    if (Call_refuse_reentry(self)) {
        return NULL;
    }
    self->running = 1;
    PyObject *r = Call_close_impl(self);
    self->running = 0;
    return r;
}

static PyObject *
Call_await(Call *self)
{
    /* Suspended in an await of its own: a second awaiter would steal its resumptions
     * (running: am_send raises "already executing", as for a coroutine). */
    if (!self->running && (self->state == ST_RUNNING || self->state == ST_DELEGATE ||
                           self->state == ST_GENERAL)) {
        PyErr_SetString(PyExc_RuntimeError, "coroutine is being awaited already");
        return NULL;
    }
    return Py_NewRef(self);
}

static void
Call_finalize(Call *self)
{
    PyObject *exc = fetch_exception();
    if (self->state == ST_INIT) {
        if (PyErr_WarnFormat(PyExc_RuntimeWarning, 1,
                             "coroutine 'EventBus.publish_async' was never awaited") < 0) {
            PyErr_WriteUnraisable((PyObject *)self);
        }
        self->state = ST_DONE;
    }
    else if (self->state != ST_DONE) {
        PyObject *r = Call_close(self, NULL);
        if (r == NULL) {
            PyErr_WriteUnraisable((PyObject *)self);
        }
        Py_XDECREF(r);
    }
    if (exc != NULL) {
        restore_exception(exc);
    }
}

static int
Call_traverse(Call *self, visitproc visit, void *arg)
{
    Py_VISIT(self->pub);
    Py_VISIT(self->event);
    Py_VISIT(self->route);
    Py_VISIT(self->fast);
    Py_VISIT(self->raise_on_error);
    Py_VISIT(self->token);
    Py_VISIT(self->inner);
    Py_VISIT(self->failure);
    return 0;
}

static int
Call_clear(Call *self)
{
    Call_done(self);
    Py_CLEAR(self->pub);
    return 0;
}

static void
Call_dealloc(Call *self)
{
    if (PyObject_CallFinalizerFromDealloc((PyObject *)self) < 0) {
        return;  /* resurrected */
    }
    PyObject_GC_UnTrack(self);
    if (self->weakrefs != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    Call_clear(self);
    PyObject_GC_Del(self);
}

static PyObject *
Call_get_name(Call *Py_UNUSED(self), void *Py_UNUSED(closure))
{
    return PyUnicode_FromString("publish_async");
}

static PyObject *
Call_get_qualname(Call *Py_UNUSED(self), void *Py_UNUSED(closure))
{
    return PyUnicode_FromString("EventBus.publish_async");
}

static PyObject *
Call_get_running(Call *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->running);
}

static PyObject *
Call_get_await(Call *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->inner != NULL ? self->inner : Py_None);
}

static PyGetSetDef Call_getset[] = {
    {"__name__", (getter)Call_get_name, NULL, NULL, NULL},
    {"__qualname__", (getter)Call_get_qualname, NULL, NULL, NULL},
    {"cr_running", (getter)Call_get_running, NULL, NULL, NULL},
    {"cr_await", (getter)Call_get_await, NULL, NULL, NULL},
    {NULL},
};

static PyMethodDef Call_methods[] = {
    {"send", (PyCFunction)Call_send_method, METH_O, "Send a value into the publish."},
    {"throw", (PyCFunction)Call_throw, METH_VARARGS, "Raise an exception in the publish."},
    {"close", (PyCFunction)Call_close, METH_NOARGS, "Abandon the publish."},
    {NULL},
};

static PyAsyncMethods Call_as_async = {
    .am_await = (unaryfunc)Call_await,
    .am_send = (sendfunc)Call_am_send,
};

static PyTypeObject Call_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "core._speedups.Call",
    .tp_basicsize = sizeof(Call),
    .tp_weaklistoffset = offsetof(Call, weakrefs),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "A one-handler publish in progress: await it.",
    .tp_dealloc = (destructor)Call_dealloc,
    .tp_finalize = (destructor)Call_finalize,
    .tp_traverse = (traverseproc)Call_traverse,
    .tp_clear = (inquiry)Call_clear,
    .tp_as_async = &Call_as_async,
    .tp_iter = PyObject_SelfIter,  /* `yield from x.__await__()` (a coroutine's wrapper is iterable) */
    .tp_iternext = (iternextfunc)Call_iternext,
    .tp_methods = Call_methods,
    .tp_getset = Call_getset,
};

/* ---- module ----------------------------------------------------------------------- */

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "core._speedups",
    .m_doc = "The one-handler publish path of EventBus, in C (optional).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    str_fast = PyUnicode_InternFromString("fast");
    str_throw = PyUnicode_InternFromString("throw");
    str_close = PyUnicode_InternFromString("close");
    str_published = PyUnicode_InternFromString("published");
    str_succeeded = PyUnicode_InternFromString("succeeded");
    int_plus_one = PyLong_FromLong(1);
    int_minus_one = PyLong_FromLong(-1);
    if (str_fast == NULL || str_throw == NULL || str_close == NULL || str_published == NULL ||
        str_succeeded == NULL || int_plus_one == NULL || int_minus_one == NULL) {
        return NULL;
    }
    if (PyType_Ready(&Publisher_Type) < 0 || PyType_Ready(&Call_Type) < 0 ||
        PyType_Ready(&TypeCount_Type) < 0 || PyType_Ready(&Durations_Type) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&speedups_module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "Publisher", (PyObject *)&Publisher_Type) < 0 ||
        PyModule_AddObjectRef(m, "Call", (PyObject *)&Call_Type) < 0 ||
        PyModule_AddObjectRef(m, "TypeCount", (PyObject *)&TypeCount_Type) < 0 ||
        PyModule_AddObjectRef(m, "Durations", (PyObject *)&Durations_Type) < 0 ||
        PyModule_AddIntConstant(m, "RING", RING) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
