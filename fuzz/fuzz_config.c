/* The YAML config reader (io/config.h): load from text, validate, and when it
 * loads, print the resolved config and load that again, which must succeed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "io/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    lb_config c;
    if (lb_config_load_string(text, "fuzz.yaml", &c) == LB_OK) {
        (void)lb_config_validate(&c);
        char *yaml = NULL;
        if (lb_config_to_yaml(&c, &yaml) == LB_OK) {
            lb_config again;
            if (lb_config_load_string(yaml, "resolved.yaml", &again) != LB_OK) {
                fprintf(stderr, "the resolved config does not load: %s\n%s\n", lb_errmsg(), yaml);
                abort();
            }
        }
        free(yaml);
    }
    free(text);
    return 0;
}
