/* DP-SGD record attributes (io/dp_record.h). */
#include "config.h"
#include "io/dp_record.h"
#include <string.h>
#include "io/h5.h"

int ds_dp_record_write(int64_t root, const ds_dp_record *r, int with_budget)
{
    const hid_t f = (hid_t)root;
    int rc = 0;
    if (with_budget) {
        rc = ds_h5_attr_set_double(f, "dp_epsilon", r->epsilon);
        if (!rc) rc = ds_h5_attr_set_double(f, "dp_delta", r->delta);
    }
    if (!rc) rc = ds_h5_attr_set_double(f, "dp_noise_multiplier", r->noise_multiplier);
    if (!rc) rc = ds_h5_attr_set_double(f, "dp_max_grad_norm", r->max_grad_norm);
    if (!rc) rc = ds_h5_attr_set_double(f, "dp_sample_rate", r->sample_rate);
    if (!rc) rc = ds_h5_attr_set_int(f, "dp_steps", r->steps);
    if (!rc) rc = ds_h5_attr_set_str(f, "dp_accountant", r->accountant);
    return rc;
}

int ds_dp_record_read(int64_t root, ds_dp_record *r)
{
    const hid_t f = (hid_t)root;
    memset(r, 0, sizeof *r);
    if (!ds_h5_attr_exists(f, "dp_epsilon")) return 0;
    r->has = 1;
    int rc = ds_h5_attr_get_double(f, "dp_epsilon", &r->epsilon);
    if (!rc) rc = ds_h5_attr_get_double(f, "dp_delta", &r->delta);
    const char *d[] = {"dp_noise_multiplier", "dp_max_grad_norm", "dp_sample_rate"};
    double *dv[] = {&r->noise_multiplier, &r->max_grad_norm, &r->sample_rate};
    for (int i = 0; i < 3 && !rc; i++)
        if (ds_h5_attr_exists(f, d[i])) rc = ds_h5_attr_get_double(f, d[i], dv[i]);
    if (!rc && ds_h5_attr_exists(f, "dp_steps")) rc = ds_h5_attr_get_int(f, "dp_steps", &r->steps);
    if (!rc && ds_h5_attr_exists(f, "dp_accountant"))
        rc = ds_h5_attr_get_str(f, "dp_accountant", r->accountant, sizeof r->accountant);
    return rc;
}
