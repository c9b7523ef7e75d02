/* The dynamic loss scale of low-precision training. */
#ifndef LOWBIT_OPTIM_LOSS_SCALE_H
#define LOWBIT_OPTIM_LOSS_SCALE_H

/* Dynamic loss scaling (as in mixed-precision training): the loss is
 * multiplied by `scale` before backward so small gradients survive a narrow
 * format, and the gradients are divided by it before the update. When a step's
 * gradients are not finite the step is skipped and the scale backs off; after
 * `growth_interval` finite steps in a row it grows again. */
typedef struct lb_loss_scaler {
    float scale;          /* current multiplier of the loss */
    float growth;         /* factor on growth (2) */
    float backoff;        /* factor on overflow (0.5) */
    int growth_interval;  /* finite steps in a row before growing (2000) */
    int good_steps;       /* finite steps since the last change */
    float min_scale;      /* floor of scale (1) */
    float max_scale;      /* ceiling of scale (2^24) */
    int dynamic;          /* 0: scale stays fixed (non-finite steps are still skipped) */
} lb_loss_scaler;

/* dynamic = 0 keeps `initial` forever; dynamic = 1 uses the defaults above. */
void lb_loss_scaler_init(lb_loss_scaler *s, float initial, int dynamic);

/* Records one step's outcome. Returns 1 when the step must be skipped
 * (gradients not finite), 0 when it may proceed. */
int lb_loss_scaler_update(lb_loss_scaler *s, int grads_finite);

#endif
