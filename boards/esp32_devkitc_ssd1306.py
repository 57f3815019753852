"""ESP32 DevKitC with a 128x64 SSD1306 OLED on I2C and four buttons to ground."""

from micropython import const

NAME = "esp32-devkitc-ssd1306"
DISPLAY = "ssd1306"
WIDTH = const(128)
HEIGHT = const(64)
COLOUR = False
I2C_BUS = const(0)
I2C_SDA = const(21)
I2C_SCL = const(22)
I2C_FREQ = const(400_000)
I2C_ADDR = const(0x3C)
# Left (very unhappy) to right (very happy); GPIO 34-39 have no pull-ups, so none is used.
BUTTONS = (32, 33, 25, 26)
BUTTON_ACTIVE_LOW = True  # each button shorts its pin to ground; internal pull-ups hold it high
LED = const(2)  # the DevKitC's on-board blue LED
BUZZER = None


def make_display():
    """The initialised SSD1306, on and blank."""
    # The drivers are firmware modules: on the kiosk they sit beside board.py in /lib.
    import ssd1306
    from machine import I2C, Pin

    i2c = I2C(I2C_BUS, scl=Pin(I2C_SCL), sda=Pin(I2C_SDA), freq=I2C_FREQ)
    return ssd1306.SSD1306(i2c, I2C_ADDR, WIDTH, HEIGHT)


def button_pins() -> tuple:
    """The buttons, left to right, as inputs with their pull-ups."""
    from machine import Pin

    return tuple(Pin(n, Pin.IN, Pin.PULL_UP) for n in BUTTONS)
